"""Small builders for Grafana dashboard JSON, so the catalog states what each panel shows and nothing else.

Every ClickHouse panel declares the columns its SQL returns (as field overrides that also carry the display
name and unit); the tests read those declarations back and check the SQL against real data.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.banks import BANKS
from schemas.provinces import provinces

JSON = dict[str, Any]

CLICKHOUSE: JSON = {"type": "grafana-clickhouse-datasource", "uid": "pulse-clickhouse"}
PROMETHEUS: JSON = {"type": "prometheus", "uid": "pulse-prometheus"}
FORMAT_TIME_SERIES = 0
FORMAT_TABLE = 1
GRID_WIDTH = 24
SCHEMA_VERSION = 39
TAG = "adoption-pulse"

# A threshold step: (colour, lower bound); the first step's bound is None (minus infinity).
Step = tuple[str, float | None]


@dataclass(frozen=True)
class Column:
    """One column a panel's SQL returns: its name in the result, the title shown, and how to format it."""

    name: str
    title: str
    unit: str | None = None
    steps: Sequence[Step] | None = None
    decimals: int | None = None


# ---------------------------------------------------------------------------------------------- SQL helpers

PROVINCE_FILTER = "province_code IN (${province:singlequote})"


def sql_string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def values_table(structure: str, rows: Iterable[Sequence[str | float]]) -> str:
    """An inline `VALUES(...)` table, so reference data needs no lookup table in ClickHouse."""
    rendered = []
    for row in rows:
        cells = [sql_string(cell) if isinstance(cell, str) else repr(cell) for cell in row]
        rendered.append("(" + ", ".join(cells) + ")")
    return f"VALUES({sql_string(structure)},\n  " + ",\n  ".join(rendered) + ")"


def provinces_table() -> str:
    """The 34 current units: code, name, region, population_millions."""
    rows = [(p.code, p.name, p.region, p.population_millions) for p in provinces().values()]
    return values_table("code String, name String, region String, population_millions Float64", rows)


def banks_table() -> str:
    """Bank BINs with their short names."""
    rows = [(bank.bin, bank.short_name) for bank in sorted(BANKS.values(), key=lambda bank: bank.bin)]
    return values_table("bin String, bank String", rows)


def window_source(table: str) -> str:
    """FROM/WHERE for a window table: FINAL keeps only the complete (highest-version) row per window."""
    return f"FROM pulse.{table} FINAL\nWHERE $__timeFilter(window_start) AND {PROVINCE_FILTER}"


def raw_source(table: str, time_column: str = "event_time") -> str:
    """FROM/WHERE for a raw event table: FINAL collapses redelivered or replayed events."""
    return f"FROM pulse.{table} FINAL\nWHERE $__timeFilter({time_column}) AND {PROVINCE_FILTER}"


def bucket(column: str) -> str:
    """Time bucket of the panel's interval, never finer than the one-minute windows."""
    return f"toStartOfInterval(toDateTime({column}), INTERVAL greatest($__interval_s, 60) SECOND)"


def per_minute(expression: str) -> str:
    """A per-bucket sum as a per-minute rate, so the curve keeps its scale when the interval changes."""
    return f"{_operand(expression)} * 60 / greatest($__interval_s, 60)"


def ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator, NULL (shown as no value) when the denominator is 0."""
    return f"{_operand(numerator)} / nullIf({denominator}, 0)"


def _operand(expression: str) -> str:
    """The expression as the left operand of `*` or `/`: parenthesised unless it is a column or one call."""
    simple = re.fullmatch(r"[\w.]+(\([^()]*\))?", expression)
    return expression if simple else f"({expression})"


def select(columns: Sequence[tuple[str, str]], rest: str) -> str:
    """`SELECT expr AS name, ...` followed by the rest of the query."""
    items = ",\n  ".join(f"{expression} AS {name}" for expression, name in columns)
    return f"SELECT\n  {items}\n{rest}"


# ---------------------------------------------------------------------------------------------- field config


def thresholds(steps: Sequence[Step] | None) -> JSON:
    steps = steps or (("green", None),)
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


def field_defaults(unit: str | None, steps: Sequence[Step] | None = None, decimals: int | None = None) -> JSON:
    defaults: JSON = {"thresholds": thresholds(steps), "color": {"mode": "thresholds" if steps else "palette-classic"}}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    return defaults


def column_overrides(columns: Sequence[Column], *, colour_cells: bool = False) -> list[JSON]:
    """One override per declared column: display name, unit, and (in tables) cells coloured by target."""
    overrides = []
    for column in columns:
        properties: list[JSON] = [{"id": "displayName", "value": column.title}]
        if column.unit:
            properties.append({"id": "unit", "value": column.unit})
        if column.decimals is not None:
            properties.append({"id": "decimals", "value": column.decimals})
        if column.steps:
            properties.append({"id": "thresholds", "value": thresholds(column.steps)})
            if colour_cells:
                properties.append({"id": "custom.cellOptions", "value": {"type": "color-text"}})
        overrides.append({"matcher": {"id": "byName", "options": column.name}, "properties": properties})
    return overrides


def declared_columns(panel: JSON) -> list[str]:
    """The column names a panel declares (read back by the tests)."""
    return [override["matcher"]["options"] for override in panel["fieldConfig"]["overrides"]]


# ---------------------------------------------------------------------------------------------- targets


def sql_target(sql: str, fmt: int, ref_id: str = "A") -> JSON:
    return {
        "datasource": CLICKHOUSE,
        "editorType": "sql",
        "format": fmt,
        "queryType": "timeseries" if fmt == FORMAT_TIME_SERIES else "table",
        "rawSql": sql,
        "refId": ref_id,
    }


def prom_target(expr: str, legend: str, ref_id: str = "A") -> JSON:
    return {"datasource": PROMETHEUS, "expr": expr, "legendFormat": legend, "range": True, "refId": ref_id}


# ---------------------------------------------------------------------------------------------- panels


def _panel(kind: str, title: str, description: str, size: tuple[int, int], datasource: JSON) -> JSON:
    width, height = size
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
    }


def _stat_options() -> JSON:
    return {
        "colorMode": "background",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": "auto",
    }


def stat(
    title: str,
    sql: str,
    *,
    unit: str,
    description: str,
    steps: Sequence[Step] | None = None,
    decimals: int | None = None,
    size: tuple[int, int] = (4, 4),
) -> JSON:
    """A single value: the SQL returns one row with one numeric column named `value`."""
    panel = _panel("stat", title, description, size, CLICKHOUSE)
    panel["targets"] = [sql_target(sql, FORMAT_TABLE)]
    panel["fieldConfig"] = {"defaults": field_defaults(unit, steps, decimals), "overrides": []}
    panel["options"] = _stat_options()
    return panel


def timeseries(
    title: str,
    sql: str,
    columns: Sequence[Column],
    *,
    unit: str,
    description: str,
    size: tuple[int, int] = (12, 8),
) -> JSON:
    """A time series: the SQL returns `time` then the declared numeric columns, ordered by time."""
    panel = _panel("timeseries", title, description, size, CLICKHOUSE)
    panel["targets"] = [sql_target(sql, FORMAT_TIME_SERIES)]
    panel["fieldConfig"] = {"defaults": field_defaults(unit), "overrides": column_overrides(columns)}
    panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "none"}}
    return panel


def table(
    title: str,
    sql: str,
    columns: Sequence[Column],
    *,
    description: str,
    size: tuple[int, int] = (24, 12),
) -> JSON:
    """A table of exactly the declared columns; cells with targets are coloured against them."""
    panel = _panel("table", title, description, size, CLICKHOUSE)
    panel["targets"] = [sql_target(sql, FORMAT_TABLE)]
    panel["fieldConfig"] = {"defaults": field_defaults(None), "overrides": column_overrides(columns, colour_cells=True)}
    panel["options"] = {"cellHeight": "sm", "showHeader": True, "footer": {"show": False}}
    return panel


def barchart(
    title: str,
    sql: str,
    columns: Sequence[Column],
    *,
    description: str,
    size: tuple[int, int] = (12, 8),
) -> JSON:
    """Bars: the first declared column is the category (x axis), the others the values."""
    panel = _panel("barchart", title, description, size, CLICKHOUSE)
    panel["targets"] = [sql_target(sql, FORMAT_TABLE)]
    panel["fieldConfig"] = {"defaults": field_defaults(None), "overrides": column_overrides(columns)}
    panel["options"] = {"orientation": "horizontal", "xField": columns[0].name, "showValue": "auto",
                        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
    return panel


def piechart(
    title: str,
    sql: str,
    columns: Sequence[Column],
    *,
    description: str,
    size: tuple[int, int] = (8, 8),
) -> JSON:
    """A pie: one row per slice, the first declared column names it, the second sizes it."""
    panel = _panel("piechart", title, description, size, CLICKHOUSE)
    panel["targets"] = [sql_target(sql, FORMAT_TABLE)]
    panel["fieldConfig"] = {"defaults": field_defaults(None), "overrides": column_overrides(columns)}
    panel["options"] = {"pieType": "donut", "displayLabels": ["name", "percent"],
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
                        "legend": {"displayMode": "list", "placement": "right", "showLegend": True}}
    return panel


def prom_stat(
    title: str,
    expr: str,
    *,
    unit: str,
    description: str,
    steps: Sequence[Step] | None = None,
    size: tuple[int, int] = (4, 4),
) -> JSON:
    panel = _panel("stat", title, description, size, PROMETHEUS)
    panel["targets"] = [prom_target(expr, "")]
    panel["fieldConfig"] = {"defaults": field_defaults(unit, steps), "overrides": []}
    panel["options"] = _stat_options()
    return panel


def prom_timeseries(
    title: str,
    series: Sequence[tuple[str, str]],
    *,
    unit: str,
    description: str,
    steps: Sequence[Step] | None = None,
    size: tuple[int, int] = (12, 8),
) -> JSON:
    """One query per (expr, legend) pair."""
    panel = _panel("timeseries", title, description, size, PROMETHEUS)
    panel["targets"] = [prom_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(series)]
    defaults = field_defaults(unit, steps)
    defaults["color"] = {"mode": "palette-classic"}
    if steps:
        defaults["custom"] = {"thresholdsStyle": {"mode": "dashed"}}
    panel["fieldConfig"] = {"defaults": defaults, "overrides": []}
    panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    return panel


# ---------------------------------------------------------------------------------------------- variables


def query_variable(name: str, label: str, sql: str) -> JSON:
    """A multi-value ClickHouse variable with "All"; no custom all-value, so "All" means the listed options."""
    return {
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": CLICKHOUSE,
        "definition": sql,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": sql,
        "refresh": 1,
        "skipUrlSync": False,
        "sort": 0,
        "type": "query",
    }


def region_variable() -> JSON:
    sql = f"SELECT DISTINCT region\nFROM {provinces_table()}\nORDER BY region"
    return query_variable("region", "Vùng / Region", sql)


def province_variable() -> JSON:
    # Value = code (what the panels filter on), text = code and name; narrowed by the chosen regions.
    sql = (
        f"SELECT code, concat(code, ' ', name)\nFROM {provinces_table()}\n"
        "WHERE region IN (${region:singlequote})\nORDER BY code"
    )
    return query_variable("province", "Tỉnh, thành / Province", sql)


# ---------------------------------------------------------------------------------------------- dashboard


def layout(panels: Sequence[JSON]) -> list[JSON]:
    """Flow panels left to right into the 24-column grid, wrapping like text; ids follow the order."""
    placed, x, y, row_height = [], 0, 0, 0
    for number, panel in enumerate(panels, start=1):
        width, height = panel["gridPos"]["w"], panel["gridPos"]["h"]
        if x + width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        placed.append({**panel, "id": number, "gridPos": {"h": height, "w": width, "x": x, "y": y}})
        x, row_height = x + width, max(row_height, height)
    return placed


def dashboard(
    uid: str,
    title: str,
    *,
    description: str,
    panels: Sequence[JSON],
    variables: Sequence[JSON] = (),
    tags: Sequence[str] = (),
    time_from: str = "now-6h",
    refresh: str = "1m",
) -> JSON:
    return {
        "annotations": {"list": []},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        # Every pulse dashboard links to the others through the shared tag.
        "links": [{"asDropdown": True, "includeVars": True, "keepTime": True, "tags": [TAG],
                   "title": "Adoption pulse", "type": "dashboards"}],
        "liveNow": False,
        "panels": layout(panels),
        "refresh": refresh,
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG, *tags],
        "templating": {"list": list(variables)},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        # The operations centres read local time.
        "timezone": "Asia/Ho_Chi_Minh",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "monday",
    }
