"""A small hand-written store for the report: three provinces, two local days (3 and 4 March 2031).

Only raw events, window rows, dead letters and targets are written; `kpi_daily` and
`service_index_monthly` are computed from them by the store (views), so the KPIs below follow from the
rows by the contract's definitions and the tests compute them by hand. The year 2031 keeps the targets
apart from any shipped reference targets.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from sinks.client import Warehouse
from sinks.schema import migrate

UTC = timezone.utc
LOCAL = timezone(timedelta(hours=7))
FIRST, LAST, AFTER = date(2031, 3, 3), date(2031, 3, 4), date(2031, 3, 5)
MONTH = date(2031, 3, 1)

# (province, local day): submitted online with VNeID, online without, at the counter; returned on time, late.
DOSSIER_DAYS = {
    ("24", FIRST): (36, 4, 10, 45, 5), ("24", LAST): (40, 7, 3, 45, 5),
    ("01", FIRST): (81, 9, 10, 95, 5), ("01", LAST): (81, 9, 10, 95, 5),
    ("96", FIRST): (27, 3, 20, 40, 10), ("96", LAST): (30, 5, 15, 40, 10),
    ("24", AFTER): (0, 0, 100, 0, 0),  # 00:30 local on 5 March is still 4 March in UTC: must not count
}
# Bắc Ninh's day starts at 06:30 local (23:30 UTC the day before), the others' at 09:00.
DAY_START = {("24", FIRST): (6, 30), ("24", AFTER): (0, 30)}
TARGET_ROWS = [  # province ('00': national), kpi, year, target, source
    ("00", "online_dossier_rate", 2031, 0.80, "national programme (test)"),
    ("24", "online_dossier_rate", 2031, 0.85, "Bắc Ninh resolution (test)"),
    ("00", "on_time_rate", 2031, 0.95, "national programme (test)"),
    ("00", "vneid_auth_rate", 2031, 0.85, "national programme (test)"),
    ("00", "online_dossier_rate", 2030, 0.50, "another year: must not be used"),
]
PAYMENTS = [  # local time, province, category, amount, status
    ("2031-03-03T06:30:00+07:00", "24", "market", 1_000_000, "success"),  # 2 March in UTC, 3 March locally
    ("2031-03-03T09:00:00+07:00", "24", "market", 2_000_000, "success"),
    ("2031-03-04T09:00:00+07:00", "24", "market", 3_000_000, "success"),
    ("2031-03-04T10:00:00+07:00", "24", "market", 5_000, "failed"),
    ("2031-03-03T11:00:00+07:00", "24", "utility", 1_500_000, "success"),
    ("2031-03-04T23:59:00+07:00", "24", "utility", 2_500_000, "success"),
    ("2031-03-05T00:30:00+07:00", "24", "market", 9_000_000, "success"),  # 4 March in UTC, outside locally
    ("2031-03-03T09:00:00+07:00", "01", "market", 7_000_000, "success"),
]
ACTIVATIONS = [("registered", 2)] * 3 + [("approved", 2)] * 2 + [("activated", 2)] * 2 + [("activated", 1)]
DEAD_LETTERS = [  # reason, raw, received (UTC)
    ("too_late", '{"province_code":"24","event_time":"2031-03-03T10:00:00+07:00"}', "2031-03-06T00:00:00+00:00"),
    ("too_late", '{"province_code":"24","event_time":"2031-03-04T10:00:00+07:00"}', "2031-03-06T00:00:00+00:00"),
    ("invalid", '{"province_code":"27","amount_vnd":-1}', "2031-03-03T03:00:00+00:00"),  # ex-Bắc Ninh code
    ("too_late", '{"province_code":"01","event_time":"2031-03-03T10:00:00+07:00"}', "2031-03-06T00:00:00+00:00"),
    ("malformed_json", "{not json", "2031-03-03T03:00:00+00:00"),
    ("too_late", '{"province_code":"24","event_time":"2031-02-20T10:00:00+07:00"}', "2031-03-03T03:00:00+00:00"),
]
WINDOWS = {  # table -> (measures, rows of window start UTC, province, values): only drawn, not checked
    "dossiers_1m": (["submitted_online", "submitted_offline", "submitted_full_process_online", "completed",
                     "completed_on_time", "paid_online", "vneid_authenticated"],
                    [("2031-03-03T02:00:00+00:00", "24", 40, 10, 10, 50, 45, 20, 36),
                     ("2031-03-04T02:00:00+00:00", "24", 47, 3, 12, 50, 45, 20, 40)]),
    "payments_1m": (["tx_count", "success_count", "amount_vnd"],
                    [("2031-03-03T02:00:00+00:00", "24", 4, 3, 4_500_000)]),
    "id_activations_1m": (["activations", "level2_activations"],
                          [("2031-03-03T02:00:00+00:00", "24", 2, 1), ("2031-03-04T02:00:00+00:00", "24", 1, 1)]),
}
DOSSIER_COLUMNS = ["event_id", "event_time", "province_code", "dossier_id", "procedure_code", "full_process",
                   "channel", "stage", "due_time", "paid_online", "vneid_authenticated"]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def dossier_events() -> list[tuple]:
    """One row per submitted or returned dossier event described by DOSSIER_DAYS, a second apart."""
    rows = []
    for (code, day), (vneid, plain, counter, on_time, late) in DOSSIER_DAYS.items():
        hour, minute = DAY_START.get((code, day), (9, 0))
        start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=LOCAL)
        kinds = ([("submitted", "online", True, 0)] * vneid + [("submitted", "online", False, 0)] * plain
                 + [("submitted", "offline", False, 0)] * counter + [("returned", "online", False, 1)] * on_time
                 + [("returned", "online", False, -1)] * late)
        for n, (stage, channel, authenticated, due_after_h) in enumerate(kinds):
            at = (start + timedelta(seconds=n)).astimezone(UTC)
            ident = f"{code}-{day:%m%d}-{n}"
            rows.append((f"ev-{ident}", at, code, f"HS-{ident}", "TTHC-0001", True, channel, stage,
                         at + timedelta(hours=due_after_h or 72), False, authenticated))
    return rows


def _fill(client, db: str) -> None:  # clickhouse-connect Client
    migrate(client, db)
    client.insert(f"{db}.targets", TARGET_ROWS, column_names=["province_code", "kpi", "year", "target", "source"])
    client.insert(f"{db}.dossier_events", dossier_events(), column_names=DOSSIER_COLUMNS)
    client.insert(f"{db}.payments", [
        (f"pay-{n}", utc(at), code, "MKT-1", "MKT-1-01", "970436", "970422", "****1234", amount, "vietqr_dynamic",
         status, category) for n, (at, code, category, amount, status) in enumerate(PAYMENTS)],
        column_names=["event_id", "event_time", "province_code", "market_id", "merchant_id", "payer_bank_bin",
                      "payee_bank_bin", "payee_account_masked", "amount_vnd", "channel", "status", "category"])
    client.insert(f"{db}.id_activations", [
        (f"id-{n}", utc("2031-03-03T09:00:00+07:00"), "24", f"{n:064x}", level,
         "police_station" if level == 2 else "self_service", "25-39", step)
        for n, (step, level) in enumerate(ACTIVATIONS)],
        column_names=["event_id", "event_time", "province_code", "citizen_ref", "level", "method", "age_band", "step"])
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
