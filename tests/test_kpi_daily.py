"""kpi_daily end to end: a hand-written event set (tests/support/kpi_events.py, every KPI computed by hand,
events before 07:00 local time that fall on the previous UTC day, a dossier overdue while open, duplicates)
through the real broker and worker must give exactly the hand-computed rows, one per key."""
from __future__ import annotations

from pathlib import Path

from sinks.client import Warehouse
from tests.support.kpi_events import EXPECTED, write_jsonl
from tests.support.services import PulseEnv, WorkerProcess


def kpi_rows(chdb_url: str) -> list[tuple]:
    warehouse = Warehouse(chdb_url, keep_open=False)
    try:
        with warehouse.lease() as client:
            return client.query("SELECT toString(day), province_code, kpi, numerator, denominator, value "
                                "FROM pulse.kpi_daily ORDER BY 1, 2, 3").result_rows
    finally:
        warehouse.close()


def test_kpi_daily_equals_the_hand_computation(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = write_jsonl(tmp_path / "kpi-events.jsonl")
    worker = WorkerProcess(pulse_env)
    try:
        pulse_env.pulse("replay", "--from-file", str(events), "--wait", "--timeout", "180")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    rows = kpi_rows(pulse_env.chdb_url)
    keys = [(day, code, kpi) for day, code, kpi, *_ in rows]
    assert len(keys) == len(set(keys)), "kpi_daily must hold one row per (day, province_code, kpi)"
    assert {(day, code, kpi): (numerator, denominator) for day, code, kpi, numerator, denominator, _ in rows} \
        == EXPECTED
    for day, code, kpi, numerator, denominator, value in rows:
        assert value == (numerator / denominator if denominator else None), (day, code, kpi)
