"""STAND-INS for issue 12's KPI tables, for issue 13's report tests and pictures only.

The lead removes this module (and its two callers: `tests/pulse/report/conftest.py` and
`pulse/report/pictures.py`, see their `kpi_standins` lines) when issue 12's migrations
(`kpi_daily`, `targets`, `service_index_monthly`, the `category` and `step` columns) land.

Each table is created only where it is missing (`EXISTS TABLE`), with the contract's columns
(../shared/CONTRACT.md), so a store that has the real tables keeps them and their rows. The fill is
deterministic: KPIs that the raw tables of this branch can give, computed with the contract's
definitions; targets and the index are placeholders and say so in `source`.
"""
from __future__ import annotations

from clickhouse_connect.driver.client import Client

DDL = {
    "kpi_daily": """CREATE TABLE IF NOT EXISTS {db}.kpi_daily (day Date, province_code LowCardinality(String),
        kpi LowCardinality(String), numerator Float64, denominator Float64, value Nullable(Float64))
        ENGINE = MergeTree ORDER BY (day, province_code, kpi)""",
    "targets": """CREATE TABLE IF NOT EXISTS {db}.targets (province_code LowCardinality(String),
        kpi LowCardinality(String), year UInt16, target Float64, source String)
        ENGINE = MergeTree ORDER BY (province_code, kpi, year)""",
    "service_index_monthly": """CREATE TABLE IF NOT EXISTS {db}.service_index_monthly (month Date,
        province_code LowCardinality(String), publicity Float64, progress Float64, digitization Float64,
        online_service Float64, satisfaction Float64, total Float64)
        ENGINE = MergeTree ORDER BY (month, province_code)""",
}
EXTRA_COLUMNS = (
    "ALTER TABLE {db}.payments ADD COLUMN IF NOT EXISTS category LowCardinality(String) DEFAULT 'market'",
    "ALTER TABLE {db}.id_activations ADD COLUMN IF NOT EXISTS step LowCardinality(String) DEFAULT 'activated'",
)
LOCAL_DAY = "toDate(event_time, 'Asia/Ho_Chi_Minh')"
KPI_FROM_RAW = {
    "online_dossier_rate": ("dossier_events", "stage = 'submitted' AND channel = 'online'", "stage = 'submitted'"),
    "vneid_auth_rate": ("dossier_events", "stage = 'submitted' AND channel = 'online' AND vneid_authenticated",
                        "stage = 'submitted' AND channel = 'online'"),
    "on_time_rate": ("dossier_events", "stage = 'returned' AND event_time <= due_time", "stage = 'returned'"),
    "qr_success_rate": ("payments", "status = 'success'", "1"),
    "vneid_level2_share": ("id_activations", "level = 2", "1"),
}
STANDIN_SOURCE = "stand-in target (tests/support/kpi_standins.py), not an official figure"
STANDIN_TARGETS = {"online_dossier_rate": 0.80, "on_time_rate": 0.95, "vneid_auth_rate": 0.85,
                   "qr_success_rate": 0.97}


def ensure_tables(client: Client, database: str) -> list[str]:
    """Creates the KPI tables that are missing and the two added raw columns; returns the tables created."""
    created = []
    for table, ddl in DDL.items():
        (exists,), = client.query(f"EXISTS TABLE {database}.{table}").result_rows
        if not exists:
            client.command(ddl.format(db=database))
            created.append(table)
    for statement in EXTRA_COLUMNS:
        client.command(statement.format(db=database))
    return created


def fill_from_raw(client: Client, database: str, created: list[str], year: int) -> None:
    """Fills only the stand-in tables just created (never real ones) from the raw tables, deterministically."""
    if "kpi_daily" in created:
        for kpi, (table, numerator, denominator) in KPI_FROM_RAW.items():
            client.command(
                f"INSERT INTO {database}.kpi_daily SELECT {LOCAL_DAY} AS day, province_code, '{kpi}', "
                f"countIf({numerator}), countIf({denominator}), "
                f"if(countIf({denominator}) = 0, NULL, countIf({numerator}) / countIf({denominator})) "
                f"FROM {database}.{table} FINAL GROUP BY day, province_code")
    if "targets" in created:
        rows = [("00", kpi, year, target, STANDIN_SOURCE) for kpi, target in STANDIN_TARGETS.items()]
        client.insert(f"{database}.targets", rows, column_names=["province_code", "kpi", "year", "target", "source"])
    if "service_index_monthly" in created:
        # Placeholder scores: progress and online service from the KPIs above, the rest fixed per province.
        client.command(
            f"INSERT INTO {database}.service_index_monthly SELECT m, province_code, pub, prog, dig, onl, sat, "
            f"pub + prog + dig + onl + sat FROM (SELECT toStartOfMonth(day) AS m, province_code, "
            f"12 + (cityHash64(province_code) % 50) / 10 AS pub, "
            f"20 * sumIf(numerator, kpi = 'on_time_rate') / greatest(1, sumIf(denominator, kpi = 'on_time_rate')) "
            f"AS prog, 14 + (cityHash64(province_code, 'd') % 70) / 10 AS dig, "
            f"22 * sumIf(numerator, kpi = 'online_dossier_rate') "
            f"/ greatest(1, sumIf(denominator, kpi = 'online_dossier_rate')) AS onl, "
            f"12 + (cityHash64(province_code, 's') % 50) / 10 AS sat "
            f"FROM {database}.kpi_daily GROUP BY m, province_code)")
