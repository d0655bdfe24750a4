"""Expansion of the Grafana ClickHouse plugin's macros and of template variables, as Grafana would send the SQL.

The tests run every panel's SQL through this against real data, so it follows the plugin's output:
`$__timeFilter(col)` -> `col >= toDateTime(<from>) AND col <= toDateTime(<to>)` (Unix seconds), and so on.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from pulse.errors import PulseError

TimePoint = datetime | int

_TIME_FILTER = re.compile(r"\$__timeFilter\(\s*([^()]+?)\s*\)")
_TIME_INTERVAL = re.compile(r"\$__timeInterval\(\s*([^()]+?)\s*\)")
# ${name}, ${name:format}, [[name]], $name; names starting with "__" are macros, not variables.
_VARIABLE = re.compile(r"\$\{(?!__)(\w+)(?::(\w+))?\}|\[\[(?!__)(\w+)\]\]|\$(?!__)(\w+)")


class UnknownVariable(PulseError, KeyError):
    def __str__(self) -> str:
        return f"the SQL uses template variable ${self.args[0]}, which was not given"


def _seconds(point: TimePoint) -> int:
    if isinstance(point, datetime):
        if point.tzinfo is None:
            raise ValueError("time range bounds must be timezone-aware datetimes (or Unix seconds)")
        return int(point.timestamp())
    return int(point)


def _quote(value: str, mark: str) -> str:
    return mark + value.replace("\\", "\\\\").replace(mark, "\\" + mark) + mark


_FORMATS: dict[str, Callable[[Sequence[str]], str]] = {
    "singlequote": lambda values: ",".join(_quote(value, "'") for value in values),
    "sqlstring": lambda values: ",".join("'" + value.replace("'", "''") + "'" for value in values),
    "doublequote": lambda values: ",".join(_quote(value, '"') for value in values),
    "csv": ",".join,
    "raw": ",".join,
    "pipe": "|".join,
    "json": lambda values: json.dumps(list(values), ensure_ascii=False),
}


def format_values(values: Sequence[str], fmt: str | None) -> str:
    """A variable's values in one of Grafana's formats; no format joins with commas, as Grafana's SQL sources do."""
    try:
        return _FORMATS[fmt or "csv"](values)
    except KeyError:
        raise ValueError(f"unsupported variable format {fmt!r}") from None


def expand_macros(sql: str, *, time_from: TimePoint, time_to: TimePoint, interval_s: int) -> str:
    start, end = _seconds(time_from), _seconds(time_to)
    sql = _TIME_FILTER.sub(lambda m: f"{m[1]} >= toDateTime({start}) AND {m[1]} <= toDateTime({end})", sql)
    sql = _TIME_INTERVAL.sub(lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {interval_s} second)", sql)
    sql = re.sub(r"\$__interval_s\b", str(int(interval_s)), sql)
    sql = re.sub(r"\$__fromTime\b", f"toDateTime({start})", sql)
    return re.sub(r"\$__toTime\b", f"toDateTime({end})", sql)


def expand_variables(sql: str, variables: Mapping[str, Sequence[str]]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[3] or match[4]
        if name not in variables:
            raise UnknownVariable(name)
        return format_values(variables[name], match[2])

    return _VARIABLE.sub(replace, sql)


def expand(
    sql: str,
    *,
    time_from: TimePoint,
    time_to: TimePoint,
    interval_s: int,
    variables: Mapping[str, Sequence[str]],
) -> str:
    """The SQL as the plugin sends it: macros first (they start with `$__`), then template variables."""
    sql = expand_macros(sql, time_from=time_from, time_to=time_to, interval_s=interval_s)
    return expand_variables(sql, variables)
