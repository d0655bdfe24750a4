"""STAND-INS for issue 12's KPI tables, for issue 13's report tests and `make pictures` only.

The lead removes this module, and its two callers (`tests/pulse/report/conftest.py` and
`pulse/report/pictures.py`: the lines marked `kpi_standins`), when issue 12's migrations (0006 event
fields, 0007 targets, 0008 `kpi_daily`, 0009 `service_index_monthly`) land.

Each object is created only where it is missing (`EXISTS TABLE`), with the contract's columns
(../shared/CONTRACT.md), so a store that has the real ones keeps them. As in issue 12, `kpi_daily` and
`service_index_monthly` are views over the raw tables: `kpi_daily` gives the five KPIs that the
contract defines from columns this branch has, exactly as defined there; the index is a PLACEHOLDER
formula. `targets` is a table; `make pictures` puts placeholder targets in it, marked as such.
"""
from __future__ import annotations

from clickhouse_connect.driver.client import Client

# Issue 12's migration 0006, verbatim in effect: the added event fields with their defaults.
EVENT_COLUMNS = (
    "ALTER TABLE {db}.dossier_events ADD COLUMN IF NOT EXISTS sector LowCardinality(String) DEFAULT ''",
    "ALTER TABLE {db}.dossier_events ADD COLUMN IF NOT EXISTS fee_vnd UInt64 DEFAULT 0",
    "ALTER TABLE {db}.dossier_events ADD COLUMN IF NOT EXISTS result_electronic Bool DEFAULT false",
    "ALTER TABLE {db}.dossier_events ADD COLUMN IF NOT EXISTS rating UInt8 DEFAULT 0",
    "ALTER TABLE {db}.payments ADD COLUMN IF NOT EXISTS category LowCardinality(String) DEFAULT 'market'",
    "ALTER TABLE {db}.id_activations ADD COLUMN IF NOT EXISTS step LowCardinality(String) DEFAULT 'activated'",
)
LOCAL_DAY = "toDate(event_time, 'Asia/Ho_Chi_Minh')"
KPI_PARTS = (  # kpi, raw table, numerator condition, denominator condition (contract definitions)
    ("online_dossier_rate", "dossier_events", "stage = 'submitted' AND channel = 'online'", "stage = 'submitted'"),
    ("vneid_auth_rate", "dossier_events", "stage = 'submitted' AND channel = 'online' AND vneid_authenticated",
     "stage = 'submitted' AND channel = 'online'"),
    ("on_time_rate", "dossier_events", "stage = 'returned' AND event_time <= due_time", "stage = 'returned'"),
    ("qr_success_rate", "payments", "status = 'success'", "1"),
    ("vneid_level2_share", "id_activations", "step = 'activated' AND level = 2", "step = 'activated'"),
)


def _kpi_daily_view(db: str) -> str:
    parts = " UNION ALL ".join(
        f"SELECT {LOCAL_DAY} AS day, province_code, '{kpi}' AS kpi, toFloat64(countIf({num})) AS numerator, "
        f"toFloat64(countIf({den})) AS denominator FROM {db}.{table} FINAL GROUP BY day, province_code "
        f"HAVING denominator > 0"
        for kpi, table, num, den in KPI_PARTS)
    return (f"CREATE VIEW IF NOT EXISTS {db}.kpi_daily AS SELECT day, province_code, kpi, numerator, denominator, "
            f"if(denominator = 0, NULL, numerator / denominator) AS value FROM ({parts})")


def _service_index_view(db: str) -> str:
    # PLACEHOLDER scores: progress from on-time, online service from online dossiers, the rest fixed per province.
    def share(kpi: str) -> str:
        return f"sumIf(numerator, kpi = '{kpi}') / nullIf(sumIf(denominator, kpi = '{kpi}'), 0)"
    return (f"CREATE VIEW IF NOT EXISTS {db}.service_index_monthly AS SELECT month, province_code, publicity, "
            f"progress, digitization, online_service, satisfaction, "
            f"publicity + progress + digitization + online_service + satisfaction AS total FROM ("
            f"SELECT toStartOfMonth(day) AS month, province_code, 12 + (cityHash64(province_code) % 50) / 10 "
            f"AS publicity, 20 * {share('on_time_rate')} AS progress, "
            f"14 + (cityHash64(province_code, 'd') % 70) / 10 AS digitization, "
            f"22 * {share('online_dossier_rate')} AS online_service, "
            f"12 + (cityHash64(province_code, 's') % 50) / 10 AS satisfaction "
            f"FROM {db}.kpi_daily GROUP BY month, province_code)")


TARGETS_TABLE = """CREATE TABLE IF NOT EXISTS {db}.targets (province_code LowCardinality(String),
    kpi LowCardinality(String), year UInt16, target Float64, source String)
    ENGINE = MergeTree ORDER BY (province_code, kpi, year)"""
PLACEHOLDER_SOURCE = "placeholder target (tests/support/kpi_standins.py), not an official figure"
PLACEHOLDER_TARGETS = {"online_dossier_rate": 0.80, "on_time_rate": 0.95, "vneid_auth_rate": 0.85,
                       "qr_success_rate": 0.97}


def ensure_tables(client: Client, database: str) -> list[str]:
    """Adds the event fields and creates what is missing of the three; returns the names it created."""
    for statement in EVENT_COLUMNS:
        client.command(statement.format(db=database))
    created = []
    for name, ddl in (("targets", TARGETS_TABLE.format(db=database)), ("kpi_daily", _kpi_daily_view(database)),
                      ("service_index_monthly", _service_index_view(database))):
        (exists,), = client.query(f"EXISTS TABLE {database}.{name}").result_rows
        if not exists:
            client.command(ddl)
            created.append(name)
    return created


def fill_placeholder_targets(client: Client, database: str, created: list[str], year: int) -> None:
    """National placeholder targets (province code '00'), only into a targets table this module created."""
    if "targets" in created:
        rows = [("00", kpi, year, target, PLACEHOLDER_SOURCE) for kpi, target in PLACEHOLDER_TARGETS.items()]
        client.insert(f"{database}.targets", rows, column_names=["province_code", "kpi", "year", "target", "source"])
