"""A chDB store holding a few hours of plausible data for all 34 provinces, shared by the session.

The data comes from one function, `load_sample_data`, so it can later be swapped for simulator output.
"""
from __future__ import annotations

import hashlib
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from schemas.banks import BANKS
from schemas.provinces import provinces
from sinks.client import Warehouse
from sinks.schema import migrate

START = datetime(2025, 9, 1, 0, 0, tzinfo=UTC)
HOURS = 3
PROCEDURES = ("1.001612", "1.004227", "1.000894", "2.000488", "1.010815", "2.001009", "1.003003", "1.005461")
AGE_BANDS = ("14-17", "18-24", "25-39", "40-59", "60+")
PAYMENT_COLUMNS = ["event_id", "event_time", "province_code", "market_id", "merchant_id", "payer_bank_bin",
                   "payee_bank_bin", "payee_account_masked", "amount_vnd", "channel", "status"]
DOSSIER_COLUMNS = ["event_id", "event_time", "province_code", "dossier_id", "procedure_code", "full_process",
                   "channel", "stage", "due_time", "paid_online", "vneid_authenticated", "fee_vnd",
                   "result_electronic", "rating"]
ACTIVATION_COLUMNS = ["event_id", "event_time", "province_code", "citizen_ref", "level", "method", "age_band"]
DEAD_LETTER_COLUMNS = ["topic", "partition", "offset", "key", "reason", "error", "raw", "received_at"]
WINDOW_COLUMNS = {
    "payments_1m": ["tx_count", "success_count", "amount_vnd"],
    "dossiers_1m": ["submitted_online", "submitted_offline", "submitted_full_process_online", "completed",
                    "completed_on_time", "paid_online", "vneid_authenticated"],
    "id_activations_1m": ["activations", "level2_activations"],
}

Row = list[Any]


@dataclass(frozen=True)
class SampleStore:
    url: str
    start: datetime
    end: datetime


class _Generator:
    """Deterministic events (random.Random(7)) and the window rows the worker would derive from them."""

    def __init__(self, start: datetime, hours: int) -> None:
        self.rng = random.Random(7)
        self.start, self.end = start, start + timedelta(hours=hours)
        self.minutes = hours * 60
        self.banks = sorted(BANKS)
        self.rows: dict[str, list[Row]] = defaultdict(list)
        # (table, window_start, province) -> measure -> count; "version" counts the events covered.
        self.windows: dict[tuple[str, datetime, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _count(self, table: str, at: datetime, code: str, **measures: bool) -> None:
        window = self.windows[(table, at.replace(second=0, microsecond=0), code)]
        window["version"] += 1
        for name, hit in measures.items():
            window[name] += int(hit)

    def generate(self) -> None:
        for code, unit in provinces().items():
            weight = max(1, round(unit.population_millions))
            for minute in range(self.minutes):
                at = self.start + timedelta(minutes=minute)
                for _ in range(self.rng.randint(0, weight)):
                    self.payment(code, at + timedelta(seconds=self.rng.uniform(0, 59.9)))
                for _ in range(self.rng.randint(0, 2)):
                    self.dossier(code, at + timedelta(seconds=self.rng.uniform(0, 59.9)))
                if self.rng.random() < 0.5:
                    self.activation(code, at + timedelta(seconds=self.rng.uniform(0, 59.9)))
        self.dead_letters()

    def payment(self, code: str, at: datetime) -> None:
        success = self.rng.random() < 0.97
        amount = max(1_000, round(self.rng.lognormvariate(11.5, 0.9), -3))  # tens to hundreds of thousands
        market = f"{code}-M{self.rng.randint(1, 6):02d}"
        self.rows["payments"].append([
            self._id(), at, code, market, f"{market}-S{self.rng.randint(1, 40):03d}", self.rng.choice(self.banks),
            self.rng.choice(self.banks), "******" + f"{self.rng.randint(0, 9999):04d}", int(amount),
            "vietqr_static" if self.rng.random() < 0.7 else "vietqr_dynamic", "success" if success else "failed",
        ])
        self._count("payments_1m", at, code, tx_count=True, success_count=success)
        self.windows[("payments_1m", at.replace(second=0, microsecond=0), code)]["amount_vnd"] += (
            int(amount) if success else 0)

    def dossier(self, code: str, at: datetime) -> None:
        dossier_id, procedure = self._id(), self.rng.choice(PROCEDURES)
        online = self.rng.random() < 0.86
        full_process = online and self.rng.random() < 0.65
        vneid = online and self.rng.random() < 0.75
        due = at + timedelta(minutes=90)
        common = [dossier_id, procedure, full_process, "online" if online else "offline"]
        self._dossier_event(code, at, common, "submitted", due, False, vneid)
        self._count("dossiers_1m", at, code, submitted_online=online, submitted_offline=not online,
                    submitted_full_process_online=full_process, vneid_authenticated=vneid)
        accepted = at + timedelta(minutes=self.rng.randint(1, 5))
        if accepted < self.end:
            self._dossier_event(code, accepted, common, "accepted", due, False, vneid)
            self._count("dossiers_1m", accepted, code)
        returned = at + timedelta(minutes=self.rng.randint(10, 110), seconds=self.rng.randint(0, 59))
        if returned < self.end:
            paid = self.rng.random() < (0.7 if online else 0.1)
            self._dossier_event(code, returned, common, "returned", due, paid, vneid)
            self._count("dossiers_1m", returned, code, completed=True, completed_on_time=returned <= due,
                        paid_online=paid)
            rated = returned + timedelta(minutes=self.rng.randint(1, 30))
            if rated < self.end and self.rng.random() < 0.5:  # half the applicants rate the service
                self._dossier_event(code, rated, common, "rated", due, paid, vneid)
                self._count("dossiers_1m", rated, code)

    def _dossier_event(self, code: str, at: datetime, common: list[Any], stage: str, due: datetime,
                       paid: bool, vneid: bool) -> None:
        dossier_id, procedure, full_process, channel = common
        fee = 50_000 if procedure.startswith("2.") else 0  # the 2.x sample procedures carry a fee
        electronic = stage == "returned" and full_process
        rating = self.rng.choice((2, 4, 5, 5)) if stage == "rated" else 0
        self.rows["dossier_events"].append([self._id(), at, code, dossier_id, procedure, full_process, channel, stage,
                                            due, paid, vneid, fee, electronic, rating])

    def activation(self, code: str, at: datetime) -> None:
        level = 2 if self.rng.random() < 0.4 else 1
        method = "police_station" if level == 2 or self.rng.random() < 0.2 else "self_service"
        citizen_ref = hashlib.sha256(self._id().encode()).hexdigest()
        self.rows["id_activations"].append(
            [self._id(), at, code, citizen_ref, level, method, self.rng.choice(AGE_BANDS)])
        self._count("id_activations_1m", at, code, activations=True, level2_activations=level == 2)

    def dead_letters(self) -> None:
        reasons = ("malformed_json", "invalid", "unknown_province", "bad_qr", "too_late")
        for offset in range(25):
            received = self.start + timedelta(minutes=self.rng.randint(0, self.minutes - 1))
            reason = self.rng.choice(reasons)
            self.rows["dead_letters"].append(["pulse.payments.vietqr", offset % 4, 1000 + offset, self._id(),
                                              reason, f"rejected: {reason}", "{}", received])

    def window_rows(self, table: str) -> list[Row]:
        measures = WINDOW_COLUMNS[table]
        keys = sorted(key for key in self.windows if key[0] == table)
        return [[start, code, *[self.windows[key][m] for m in measures], self.windows[key]["version"]]
                for key in keys for _, start, code in [key]]


def load_sample_data(client: Client, database: str) -> None:
    """Insert a few hours of events for all 34 provinces into the raw tables, and their window rows."""
    generator = _Generator(START, HOURS)
    generator.generate()
    for table, columns in (("payments", PAYMENT_COLUMNS), ("dossier_events", DOSSIER_COLUMNS),
                           ("id_activations", ACTIVATION_COLUMNS), ("dead_letters", DEAD_LETTER_COLUMNS)):
        client.insert(f"{database}.{table}", generator.rows[table], column_names=columns)
    for table, measures in WINDOW_COLUMNS.items():
        client.insert(f"{database}.{table}", generator.window_rows(table),
                      column_names=["window_start", "province_code", *measures, "version"])


def data_time_range(client: Client, database: str) -> tuple[datetime, datetime]:
    """The span the stored data covers, whatever loaded it."""
    parts = [f"SELECT min(window_start) AS lo, max(window_start) AS hi FROM {database}.{table}"
             for table in WINDOW_COLUMNS]
    parts += [f"SELECT min(toDateTime(event_time)), max(toDateTime(event_time)) FROM {database}.{table}"
              for table in ("payments", "dossier_events", "id_activations")]
    parts.append(f"SELECT min(toDateTime(received_at)), max(toDateTime(received_at)) FROM {database}.dead_letters")
    lo, hi = client.query(f"SELECT min(lo), max(hi) FROM ({' UNION ALL '.join(parts)})").result_rows[0]
    return lo.replace(tzinfo=UTC), hi.replace(tzinfo=UTC) + timedelta(minutes=1)


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleStore]:
    url = f"chdb://{tmp_path_factory.mktemp('pulse-chdb') / 'store'}"
    warehouse = Warehouse(url)
    try:
        with warehouse.lease() as client:
            migrate(client, warehouse.database)
            load_sample_data(client, warehouse.database)
            start, end = data_time_range(client, warehouse.database)
    finally:
        # chDB opens one store per process: give it back so other tests can open theirs in between.
        warehouse.close()
    yield SampleStore(url, start, end)
