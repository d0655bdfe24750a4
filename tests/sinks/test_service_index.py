"""The Decision 766 index of one province-month against a hand computation (formulas: docs/service-index.md),
and kpi_daily reading the reference tables, on the hand-written event set of tests/support/kpi_events.py
stored through the pipeline core into a real chDB (no Kafka: test_kpi_daily.py covers the broker path)."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from sinks.client import Warehouse
from sinks.sink import ClickHouseSink
from tests.support.kpi_events import ELIGIBLE, OFFERED_01, hand_events, store_through_pipeline


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseSink]:
    sink = ClickHouseSink(Warehouse(f"chdb://{tmp_path_factory.mktemp('index') / 'ch'}", keep_open=True))
    try:  # one embedded engine per process: a store left open breaks every later test's store
        assert store_through_pipeline(sink) == len({e["event_id"] for e in hand_events()})  # copies count once
        yield sink
    finally:
        sink.close()


def query(sink: ClickHouseSink, sql: str) -> list[tuple]:
    with sink.transaction() as tx:
        return tx.client.query(sql).result_rows


def test_service_index_of_one_province_month_equals_the_hand_computation(store: ClickHouseSink) -> None:
    [row] = query(store, "SELECT month, publicity, progress, digitization, online_service, satisfaction, total "
                         "FROM pulse.service_index_monthly WHERE province_code = '01'")
    # Province 01, March 2026 (two days of tests/support/kpi_events.py):
    publicity = 18 * 6 / 6  # d1..d6 submitted; each has an event after submission
    progress = 20 * 2 / 3  # returned on time: d1, d3 of d1, d3, d4
    digitization = 22 * 2 / 3  # electronic results: d1, d4 of 3 returned
    online_service = 22 * (OFFERED_01 / ELIGIBLE + 4 / 6 + 1 / 2) / 3  # offer rate; 4 of 6 online; 1 of 2 fees online
    satisfaction = 18 * 1 / 2  # ratings 5 and 3
    expected = (publicity, progress, digitization, online_service, satisfaction)
    assert row[0] == date(2026, 3, 1)
    assert row[1:6] == pytest.approx(expected, abs=1e-9)
    assert row[6] == pytest.approx(sum(expected), abs=1e-9) and row[6] == pytest.approx(69.922222222, abs=1e-6)


def test_a_group_without_data_is_null_and_unpublished_dossiers_score_no_publicity(store: ClickHouseSink) -> None:
    [row] = query(store, "SELECT publicity, progress, total FROM pulse.service_index_monthly "
                         "WHERE province_code = '79'")
    assert row == (0.0, None, None)  # d7: submitted, nothing since; nothing returned in 79


def test_reference_tables_are_loaded_once_per_content(store: ClickHouseSink) -> None:
    from sinks.reference import load_reference_data

    with store.transaction() as tx:
        assert load_reference_data(tx.client, "pulse") == []  # already loaded at migrate: nothing to do
    counts = query(store, "SELECT (SELECT count() FROM pulse.procedure_catalogue), "
                          "(SELECT countIf(eligible_full_process) FROM pulse.procedure_catalogue), "
                          "(SELECT count() FROM pulse.procedure_offers WHERE province_code = '01'), "
                          "(SELECT count() FROM pulse.targets WHERE kpi = 'satisfaction_rate' AND year = 2026)")
    assert counts == [(1800, ELIGIBLE, OFFERED_01, 34)]
