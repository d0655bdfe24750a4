"""The KPI dashboard's panels give the hand-computed values on the hand-written event set
(tests/support/kpi_events.py): daily KPIs on local days, target attainment, the 766 ranking."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from pulse.dashboards.catalog import kpis
from pulse.dashboards.macros import expand
from schemas.provinces import provinces
from sinks.client import Warehouse
from sinks.sink import ClickHouseSink
from tests.support.kpi_events import ELIGIBLE, OFFERED_01, OFFERED_79, hand_events, store_through_pipeline

ICT = timezone(timedelta(hours=7))
RANGE = (datetime(2026, 3, 2, tzinfo=ICT), datetime(2026, 3, 3, 23, 59, tzinfo=ICT))
PANELS = {panel["title"].split(" / ")[-1]: panel for panel in kpis()["panels"]}
INDEX_01 = 18 + 20 * 2 / 3 + 22 * 2 / 3 + 22 * (OFFERED_01 / ELIGIBLE + 4 / 6 + 1 / 2) / 3 + 18 / 2


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    sink = ClickHouseSink(Warehouse(f"chdb://{tmp_path_factory.mktemp('kpi-board') / 'ch'}", keep_open=True))
    try:
        assert store_through_pipeline(sink) == len({e["event_id"] for e in hand_events()})  # copies count once
        with sink.transaction() as tx:
            yield tx.client
    finally:
        sink.close()


def rows(client: Any, title: str, codes: list[str] | None = None) -> list[tuple]:
    sql = PANELS[title]["targets"][0]["rawSql"]
    expanded = expand(sql, time_from=RANGE[0], time_to=RANGE[1], interval_s=86400,
                      variables={"province": codes or list(provinces()), "region": ["Red River Delta"]})
    return client.query(expanded).result_rows


def test_mean_index_of_the_selected_provinces(client: Any) -> None:
    assert rows(client, "Mean Decision 766 index") == [(pytest.approx(INDEX_01),)]  # 79 has no total
    assert rows(client, "Mean Decision 766 index", ["79"]) == [(None,)]


def test_daily_kpis_are_ratios_of_summed_counts_per_local_day(client: Any) -> None:
    # columns: time, online_dossier_rate, on_time_rate, vneid_auth_rate, electronic_result_rate, overdue_open,
    # online_payment_rate, full_process_offer_rate
    d1, d2 = rows(client, "KPIs per local day")
    assert d1[0].date() == date(2026, 3, 2) and d2[0].date() == date(2026, 3, 3)
    both = (OFFERED_01 + OFFERED_79) / (2 * ELIGIBLE)  # 01 and 79 have dossier events on D1, only 01 on D2
    assert d1[1:] == pytest.approx((4 / 6, 1.0, 2 / 4, 1.0, 1 / 4, 1.0, both))  # 01 and 79 together
    assert d2[1:] == pytest.approx((1.0, 1 / 2, 1.0, 1 / 2, 1 / 2, 0.0, OFFERED_01 / ELIGIBLE))


def test_attainment_against_the_targets_of_the_year(client: Any) -> None:
    got = [(kpi, code, value, target, attainment) for kpi, code, _, value, target, attainment, _ in
           rows(client, "Target attainment")]
    assert got == [
        ("online_dossier_rate", "01", pytest.approx(4 / 6), 0.8, pytest.approx(4 / 6 / 0.8)),
        ("online_dossier_rate", "79", 1.0, 0.8, pytest.approx(1 / 0.8)),
        ("satisfaction_rate", "01", 0.5, 0.9, pytest.approx(0.5 / 0.9)),
        ("satisfaction_rate", "79", None, 0.9, None),  # nothing rated in 79: no value, no attainment
    ]


def test_ranking_lists_all_34_units_ranked_by_index(client: Any) -> None:
    ranking = rows(client, "34-province ranking, Decision 766 index", ["79"])  # the province filter is ignored
    assert len(ranking) == 34
    assert ranking[0][:3] == (1, "01", "Hà Nội") and ranking[0][-1] == pytest.approx(INDEX_01)
    assert all(rank is None and total is None for rank, *_, total in ranking[1:])
    assert [row[1] for row in ranking[1:]] == sorted(code for code in provinces() if code != "01")
