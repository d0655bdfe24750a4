"""A small hand-written store for the report: three provinces, two local days (2 and 3 March 2026).

Every figure the report shows is computed by hand in the tests from the rows below. The KPI tables
come from `tests/support/kpi_standins.py` only where the migrations have not made them (see there).
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from sinks.client import Warehouse
from sinks.schema import migrate
from tests.support import kpi_standins  # the lead removes this with the stand-ins once issue 12 has landed

UTC = timezone.utc
FIRST, LAST = date(2026, 3, 2), date(2026, 3, 3)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


KPI_ROWS = [  # day, province, kpi, numerator, denominator
    (FIRST, "24", "online_dossier_rate", 40, 50), (LAST, "24", "online_dossier_rate", 47, 50),
    (date(2026, 3, 4), "24", "online_dossier_rate", 0, 100),  # after the period: must not count
    (FIRST, "01", "online_dossier_rate", 90, 100), (LAST, "01", "online_dossier_rate", 90, 100),
    (FIRST, "96", "online_dossier_rate", 30, 50), (LAST, "96", "online_dossier_rate", 35, 50),
    (FIRST, "24", "on_time_rate", 45, 50), (LAST, "24", "on_time_rate", 45, 50),
    (FIRST, "01", "on_time_rate", 95, 100), (LAST, "01", "on_time_rate", 95, 100),
    (FIRST, "96", "on_time_rate", 40, 50), (LAST, "96", "on_time_rate", 40, 50),
    (FIRST, "24", "overdue_open", 2, 20), (LAST, "24", "overdue_open", 3, 20),
    (FIRST, "01", "overdue_open", 1, 20), (LAST, "01", "overdue_open", 0, 20),
    (FIRST, "96", "overdue_open", 5, 20), (LAST, "96", "overdue_open", 5, 20),
]
TARGET_ROWS = [  # province ('00': national), kpi, year, target, source
    ("00", "online_dossier_rate", 2026, 0.80, "national programme (test)"),
    ("24", "online_dossier_rate", 2026, 0.85, "Bắc Ninh resolution (test)"),
    ("00", "on_time_rate", 2026, 0.95, "national programme (test)"),
    ("00", "overdue_open", 2026, 0.10, "national programme (test)"),
    ("00", "online_dossier_rate", 2025, 0.50, "last year: must not be used"),
]
INDEX_ROWS = [  # month, province, publicity, progress, digitization, online_service, satisfaction, total
    (date(2026, 3, 1), "24", 15, 18, 20, 19, 16, 88), (date(2026, 3, 1), "01", 16, 19, 21, 20, 17, 93),
    (date(2026, 3, 1), "96", 12, 14, 15, 16, 13, 70),
]
PAYMENTS = [  # local time, province, category, amount, status
    ("2026-03-02T06:30:00+07:00", "24", "market", 1_000_000, "success"),  # 1 March in UTC, 2 March locally
    ("2026-03-02T09:00:00+07:00", "24", "market", 2_000_000, "success"),
    ("2026-03-03T09:00:00+07:00", "24", "market", 3_000_000, "success"),
    ("2026-03-03T10:00:00+07:00", "24", "market", 5_000, "failed"),
    ("2026-03-02T11:00:00+07:00", "24", "utility", 1_500_000, "success"),
    ("2026-03-03T23:59:00+07:00", "24", "utility", 2_500_000, "success"),
    ("2026-03-04T00:30:00+07:00", "24", "market", 9_000_000, "success"),  # 3 March in UTC, outside locally
    ("2026-03-02T09:00:00+07:00", "01", "market", 7_000_000, "success"),
]
ACTIVATIONS = [("registered", 2)] * 3 + [("approved", 2)] * 2 + [("activated", 2)] * 2 + [("activated", 1)]
DEAD_LETTERS = [  # reason, raw, received (UTC)
    ("too_late", '{"province_code":"24","event_time":"2026-03-02T10:00:00+07:00"}', "2026-03-05T00:00:00+00:00"),
    ("too_late", '{"province_code":"24","event_time":"2026-03-03T10:00:00+07:00"}', "2026-03-05T00:00:00+00:00"),
    ("invalid", '{"province_code":"27","amount_vnd":-1}', "2026-03-02T03:00:00+00:00"),  # ex-Bắc Ninh code
    ("too_late", '{"province_code":"01","event_time":"2026-03-02T10:00:00+07:00"}', "2026-03-05T00:00:00+00:00"),
    ("malformed_json", "{not json", "2026-03-02T03:00:00+00:00"),
    ("too_late", '{"province_code":"24","event_time":"2026-02-20T10:00:00+07:00"}', "2026-03-02T03:00:00+00:00"),
]
WINDOWS = {  # table -> (window start UTC, province, measures...)
    "dossiers_1m": (["submitted_online", "submitted_offline", "submitted_full_process_online", "completed",
                     "completed_on_time", "paid_online", "vneid_authenticated"],
                    [("2026-03-02T01:00:00+00:00", "24", 40, 10, 10, 50, 45, 20, 36),
                     ("2026-03-03T01:00:00+00:00", "24", 47, 3, 12, 50, 45, 20, 40)]),
    "payments_1m": (["tx_count", "success_count", "amount_vnd"],
                    [("2026-03-02T01:00:00+00:00", "24", 4, 3, 4_500_000)]),
    "id_activations_1m": (["activations", "level2_activations"],
                          [("2026-03-02T01:00:00+00:00", "24", 2, 1), ("2026-03-03T01:00:00+00:00", "24", 1, 1)]),
}


def _fill(client, db: str) -> None:  # noqa: ANN001 - clickhouse-connect Client
    migrate(client, db)
    kpi_standins.ensure_tables(client, db)
    client.insert(f"{db}.kpi_daily", [(*row, row[3] / row[4] if row[4] else None) for row in KPI_ROWS],
                  column_names=["day", "province_code", "kpi", "numerator", "denominator", "value"])
    client.insert(f"{db}.targets", TARGET_ROWS, column_names=["province_code", "kpi", "year", "target", "source"])
    client.insert(f"{db}.service_index_monthly", INDEX_ROWS,
                  column_names=["month", "province_code", "publicity", "progress", "digitization", "online_service",
                                "satisfaction", "total"])
    client.insert(f"{db}.payments", [
        (f"pay-{n}", utc(at), code, "MKT-1", "MKT-1-01", "970436", "970422", "****1234", amount, "vietqr_dynamic",
         status, category) for n, (at, code, category, amount, status) in enumerate(PAYMENTS)],
        column_names=["event_id", "event_time", "province_code", "market_id", "merchant_id", "payer_bank_bin",
                      "payee_bank_bin", "payee_account_masked", "amount_vnd", "channel", "status", "category"])
    client.insert(f"{db}.id_activations", [
        (f"id-{n}", utc("2026-03-02T09:00:00+07:00"), "24", f"{n:064x}", level,
         "police_station" if level == 2 else "self_service", "25-39", step)
        for n, (step, level) in enumerate(ACTIVATIONS)],
        column_names=["event_id", "event_time", "province_code", "citizen_ref", "level", "method", "age_band", "step"])
    client.insert(f"{db}.dossier_events", [
        (f"ds-{n}", utc("2026-03-02T09:00:00+07:00"), "24", f"HS-{n}", "TTHC-0001", True, "online", "submitted",
         utc("2026-03-09T09:00:00+07:00"), False, True) for n in range(3)],
        column_names=["event_id", "event_time", "province_code", "dossier_id", "procedure_code", "full_process",
                      "channel", "stage", "due_time", "paid_online", "vneid_authenticated"])
    client.insert(f"{db}.dead_letters", [
        ("pulse.payments.vietqr", 0, n, "", reason, "", raw, utc(received))
        for n, (reason, raw, received) in enumerate(DEAD_LETTERS)],
        column_names=["topic", "partition", "offset", "key", "reason", "error", "raw", "received_at"])
    for table, (measures, rows) in WINDOWS.items():
        client.insert(f"{db}.{table}", [(utc(start), code, *values, 1) for start, code, *values in rows],
                      column_names=["window_start", "province_code", *measures, "version"])


@pytest.fixture(scope="session")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The chDB URL of the hand-written store (read-only for the tests that use it)."""
    url = f"chdb://{tmp_path_factory.mktemp('report-store') / 'store'}"
    warehouse = Warehouse(url, keep_open=False)
    try:
        with warehouse.lease() as client:
            _fill(client, warehouse.database)
    finally:
        warehouse.close()
    yield url


@pytest.fixture
def report_env(report_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PULSE_CLICKHOUSE_URL", report_store)
    monkeypatch.setenv("PULSE_STATE_DIR", str(tmp_path / "state"))
    return report_store
