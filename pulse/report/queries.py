"""What the report reads from ClickHouse: plain SQL over the contract's tables, no DDL, no writes.

Days are local (Asia/Ho_Chi_Minh) and both ends of a period are included. Every function takes the
province scope as a list of current codes (empty = all provinces) and returns plain Python values;
turning them into ranks, sentences and charts is `content`'s job.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from clickhouse_connect.driver.client import Client

LOCAL_TZ = "Asia/Ho_Chi_Minh"
KPI_TABLES = ("kpi_daily", "targets", "service_index_monthly")
RAW_TABLES = {"payments": "payments", "dossiers": "dossier_events", "identity": "id_activations"}
WINDOW_TABLES = ("payments_1m", "dossiers_1m", "id_activations_1m")
SERVICE_GROUPS = ("publicity", "progress", "digitization", "online_service", "satisfaction")


@dataclass(frozen=True)
class Scope:
    """A period of local days (both included) and the provinces it covers (empty: all)."""

    first: date
    last: date
    database: str = "pulse"
    provinces: tuple[str, ...] = ()
    legacy_codes: tuple[str, ...] = ()  # legacy codes of those provinces, for dead letters stored raw

    def days(self, expr: str) -> str:
        return f"{expr} BETWEEN toDate('{self.first.isoformat()}') AND toDate('{self.last.isoformat()}')"

    def local_days(self, column: str) -> str:
        return self.days(f"toDate({column}, '{LOCAL_TZ}')")

    def province_filter(self, column: str = "province_code") -> str:
        # Codes come from the province registry (two digits), never from free text: safe to inline.
        return f"{column} IN ({', '.join(repr(code) for code in self.provinces)})" if self.provinces else "1"


def existing_tables(client: Client, database: str) -> set[str]:
    rows = client.query(f"SELECT name FROM system.tables WHERE database = '{database}'").result_rows
    return {name for (name,) in rows}


def table_columns(client: Client, database: str, table: str) -> set[str]:
    rows = client.query(
        f"SELECT name FROM system.columns WHERE database = '{database}' AND table = '{table}'").result_rows
    return {name for (name,) in rows}


def kpi_totals(client: Client, scope: Scope) -> dict[tuple[str, str], tuple[float, float]]:
    """(province, kpi) -> (numerator, denominator) summed over the period, for every province."""
    rows = client.query(
        f"SELECT province_code, kpi, sum(numerator), sum(denominator) FROM {scope.database}.kpi_daily "
        f"WHERE {scope.days('day')} GROUP BY province_code, kpi").result_rows
    return {(code, kpi): (float(num), float(den)) for code, kpi, num, den in rows}


def kpi_days(client: Client, scope: Scope) -> dict[str, dict[date, tuple[float, float]]]:
    """kpi -> day -> (numerator, denominator) summed over the scope's provinces."""
    rows = client.query(
        f"SELECT kpi, day, sum(numerator), sum(denominator) FROM {scope.database}.kpi_daily "
        f"WHERE {scope.days('day')} AND {scope.province_filter()} GROUP BY kpi, day ORDER BY kpi, day"
    ).result_rows
    series: dict[str, dict[date, tuple[float, float]]] = defaultdict(dict)
    for kpi, day, num, den in rows:
        series[kpi][day] = (float(num), float(den))
    return dict(series)


def targets(client: Client, scope: Scope, year: int) -> list[tuple[str, str, float, str]]:
    """(province_code, kpi, target, source) for the year, every province (and national rows)."""
    rows = client.query(
        f"SELECT province_code, kpi, target, source FROM {scope.database}.targets WHERE year = {int(year)} "
        f"ORDER BY province_code, kpi").result_rows
    return [(code, kpi, float(target), source) for code, kpi, target, source in rows]


def service_index(client: Client, scope: Scope) -> list[tuple]:
    """(month, province_code, five groups..., total) for the months the period touches, every province."""
    groups = ", ".join(SERVICE_GROUPS)
    return client.query(
        f"SELECT month, province_code, {groups}, total FROM {scope.database}.service_index_monthly "
        f"WHERE month BETWEEN toStartOfMonth(toDate('{scope.first.isoformat()}')) "
        f"AND toDate('{scope.last.isoformat()}') ORDER BY month, province_code").result_rows


def daily_volumes(client: Client, scope: Scope) -> dict[date, dict[str, int]]:
    """Local day -> window sums (dossiers submitted/returned, QR payments, activations) in the scope."""
    measures = {
        "payments_1m": ("tx_count", "success_count", "amount_vnd"),
        "dossiers_1m": ("submitted_online", "submitted_offline", "completed", "completed_on_time"),
        "id_activations_1m": ("activations", "level2_activations"),
    }
    days: dict[date, dict[str, int]] = defaultdict(dict)
    for table, names in measures.items():
        sums = ", ".join(f"sum({name})" for name in names)
        rows = client.query(
            f"SELECT toDate(window_start, '{LOCAL_TZ}') AS day, {sums} FROM {scope.database}.{table} FINAL "
            f"WHERE {scope.local_days('window_start')} AND {scope.province_filter()} GROUP BY day ORDER BY day"
        ).result_rows
        for day, *values in rows:
            days[day].update({name: int(value) for name, value in zip(names, values)})
    return dict(sorted(days.items()))


def payment_categories(client: Client, scope: Scope) -> list[tuple[str, int, int, int]]:
    """(category, payments, successful, value of successful VND); without a `category` column: all `market`."""
    category = "category" if "category" in table_columns(client, scope.database, "payments") else "'market'"
    return client.query(
        f"SELECT {category} AS cat, count(), countIf(status = 'success'), sumIf(amount_vnd, status = 'success') "
        f"FROM {scope.database}.payments FINAL WHERE {scope.local_days('event_time')} "
        f"AND {scope.province_filter()} GROUP BY cat ORDER BY cat").result_rows


def vneid_steps(client: Client, scope: Scope) -> list[tuple[str, int, int]]:
    """(step, level, events) of VNeID accounts; without a `step` column every event is an activation."""
    step = "step" if "step" in table_columns(client, scope.database, "id_activations") else "'activated'"
    return [(name, int(level), int(count)) for name, level, count in client.query(
        f"SELECT {step} AS st, level, count() FROM {scope.database}.id_activations FINAL "
        f"WHERE {scope.local_days('event_time')} AND {scope.province_filter()} "
        f"GROUP BY st, level ORDER BY st, level").result_rows]


def accepted_events(client: Client, scope: Scope) -> dict[str, int]:
    """Stream -> events stored (each once, by event_id) whose event time falls in the period."""
    counts = {}
    for stream, table in RAW_TABLES.items():
        (count,), = client.query(
            f"SELECT count() FROM {scope.database}.{table} FINAL "
            f"WHERE {scope.local_days('event_time')} AND {scope.province_filter()}").result_rows
        counts[stream] = int(count)
    return counts


def dead_letters(client: Client, scope: Scope) -> list[tuple[str, str, int]]:
    """(reason, province code read from the rejected message or '', count) in the period.

    A dead letter is dated by the event time the rejected message carried when one can be read (a
    `too_late` event belongs to the day it happened, also when a month is backfilled), else by when it
    was received; its province is the code the message carried (legacy codes included), if any."""
    codes = scope.provinces + scope.legacy_codes
    raw_code = "JSONExtractString(raw, 'province_code')"
    scoped = f"{raw_code} IN ({', '.join(repr(code) for code in codes)})" if codes else "1"
    event_day = (f"toDate(parseDateTime64BestEffortOrNull(JSONExtractString(raw, 'event_time'), 3, 'UTC'), "
                 f"'{LOCAL_TZ}')")
    dated = f"coalesce({event_day}, toDate(received_at, '{LOCAL_TZ}'))"
    return [(reason, code, int(count)) for reason, code, count in client.query(
        f"SELECT reason, {raw_code} AS code, count() FROM {scope.database}.dead_letters FINAL "
        f"WHERE {scope.days(dated)} AND {scoped} GROUP BY reason, code ORDER BY reason, code").result_rows]
