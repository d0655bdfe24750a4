"""`pulse kpi-exporter`: the gauges it serves for the hand-written event set (tests/support/kpi_events.py),
read from a real chDB store as of midday on its second local day."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pulse.kpi_exporter import KpiCollector, local_days
from pulse.settings import Settings
from sinks.client import Warehouse
from sinks.sink import ClickHouseSink
from tests.support.kpi_events import hand_events, store_through_pipeline

ICT = timezone(timedelta(hours=7))


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    state = tmp_path_factory.mktemp("kpi-exporter")
    sink = ClickHouseSink(Warehouse(f"chdb://{state / 'clickhouse'}", keep_open=True))
    try:
        assert store_through_pipeline(sink) == len({e["event_id"] for e in hand_events()})  # copies count once
    finally:
        sink.close()
    return Settings(state_dir=state, clickhouse_url=f"chdb://{state / 'clickhouse'}")


def samples(collector: KpiCollector) -> dict[tuple[str, ...], float]:
    return {(family.name, *sample.labels.values()): sample.value
            for family in collector.collect() for sample in family.samples if sample.labels}


def test_local_days_turn_at_midnight_in_vietnam() -> None:
    # 17:30 UTC on 2 March is 00:30 on 3 March in Vietnam
    today, yesterday = local_days(datetime(2026, 3, 2, 17, 30, tzinfo=timezone.utc))
    assert (today.isoformat(), yesterday.isoformat()) == ("2026-03-03", "2026-03-02")


def test_gauges_hold_value_target_and_attainment_per_local_day(settings: Settings) -> None:
    collector = KpiCollector()
    collector.refresh(settings, now=datetime(2026, 3, 3, 12, 0, tzinfo=ICT))
    got = samples(collector)
    # 01 online_dossier_rate: 3 of 5 on 2 March, 1 of 1 on 3 March; national target 0.8 for 2026.
    assert got[("pulse_kpi_value", "01", "online_dossier_rate", "yesterday")] == pytest.approx(0.6)
    assert got[("pulse_kpi_attainment_ratio", "01", "online_dossier_rate", "yesterday")] == pytest.approx(0.75)
    assert got[("pulse_kpi_attainment_ratio", "01", "online_dossier_rate", "today")] == pytest.approx(1.25)
    assert got[("pulse_kpi_denominator", "01", "online_dossier_rate", "yesterday")] == 5
    assert got[("pulse_kpi_target", "01", "satisfaction_rate", "today")] == 0.9
    assert got[("pulse_kpi_attainment_ratio", "01", "satisfaction_rate", "today")] == 0.0  # rated 3 of 5: 0 of 1
    # 79: nothing rated on 2 March: the denominator (0) is served, no value and no attainment.
    assert got[("pulse_kpi_denominator", "79", "satisfaction_rate", "yesterday")] == 0
    assert ("pulse_kpi_value", "79", "satisfaction_rate", "yesterday") not in got
    # KPIs without a target (qr_success_rate, overdue_open, ...) are not exported.
    assert not [key for key in got if key[2] in ("qr_success_rate", "overdue_open")]
    assert collector.last_success > 0


def test_a_failed_read_keeps_the_previous_values(settings: Settings, tmp_path: Path) -> None:
    collector = KpiCollector()
    collector.refresh(settings, now=datetime(2026, 3, 3, 12, 0, tzinfo=ICT))
    before, stamp = samples(collector), collector.last_success
    broken = Settings(state_dir=tmp_path, clickhouse_url="http://127.0.0.1:1/pulse")
    collector.refresh(broken, now=datetime(2026, 3, 3, 12, 0, tzinfo=ICT))
    assert samples(collector) == before and collector.last_success == stamp
