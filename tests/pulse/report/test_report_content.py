"""`pulse report` against the hand-written store: every figure checked against a hand computation."""
from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
from click.testing import CliRunner

from pulse.cli import main
from pulse.report.build import ReportError, ReportRequest, build
from pulse.report.content import KPI_BY_NAME, Target, kpi_figures, ranking
from pulse.report.formatting import vn_decimal, vn_int, vn_money_millions, vn_pct
from sinks.client import Warehouse
from tests.pulse.report.conftest import FIRST, LAST, MONTH

NBSP = "\u00a0"


def test_vietnamese_number_format() -> None:
    assert vn_int(1234567) == "1.234.567"
    assert vn_int(999) == "999"
    assert vn_decimal(1234.56) == "1.234,6"
    assert vn_pct(0.875) == f"87,5{NBSP}%"
    assert vn_pct(0.8) == f"80,0{NBSP}%"
    assert vn_pct(None) == "–"
    assert vn_money_millions(6_000_000) == f"6,0{NBSP}tr{NBSP}₫"


def test_lower_is_better_ranks_and_targets() -> None:
    totals = {("24", "overdue_open"): (5, 40), ("01", "overdue_open"): (1, 40), ("96", "overdue_open"): (10, 40)}
    targets = {("24", "overdue_open"): Target(0.10, "test", False)}
    assert [(row.rank, row.code) for row in ranking(totals, "overdue_open", targets)] == [(1, "01"), (2, "24"),
                                                                                         (3, "96")]
    (figure,) = kpi_figures(totals, targets, ("24",))
    assert figure.kpi == KPI_BY_NAME["overdue_open"]
    assert (figure.value, figure.rank, figure.ranked, figure.met) == (0.125, 2, 3, False)
    tied = ranking({("24", "on_time_rate"): (9, 10), ("01", "on_time_rate"): (18, 20)}, "on_time_rate", {})
    assert [(row.rank, row.code) for row in tied] == [(1, "01"), (1, "24")]  # ties share a rank, then by code


def _query(url: str, sql: str) -> list[tuple]:
    warehouse = Warehouse(url, keep_open=False)
    try:
        with warehouse.lease() as client:
            return client.query(sql).result_rows
    finally:
        warehouse.close()


def _page(url: str, request: ReportRequest):
    warehouse = Warehouse(url, keep_open=False)
    try:
        with warehouse.lease() as client:
            return build(client, warehouse.database, request)
    finally:
        warehouse.close()


def test_province_figures_ranks_and_summary(report_store: str) -> None:
    page = _page(report_store, ReportRequest(FIRST, LAST, "24"))
    # Online: (36+4) + (40+7) of 50 + 50 submitted (the 100 counter dossiers of 5 March are outside the period
    # although 4 March in UTC); own target 85 % beats the national 80 %; Hà Nội 180/200 first, Cà Mau 65/100 third.
    assert page.summary == f"Bắc Ninh: online dossiers 87,0{NBSP}%, target 85,0{NBSP}%, rank 2 of 3."
    figures = {f.kpi.name: f for f in page.figures}
    online = figures["online_dossier_rate"]
    assert (online.numerator, online.denominator, online.target.source) == (87, 100, "Bắc Ninh resolution (test)")
    # On time 90 of 100 against 95 %: Hà Nội 190/200, Cà Mau 80/100.
    assert (figures["on_time_rate"].value, figures["on_time_rate"].rank, figures["on_time_rate"].met) == (0.9, 2, False)
    # VNeID sign-in: 76 of 87 online = 87,36 %, behind Hà Nội 162/180 = 90 % and Cà Mau 57/65 = 87,69 %.
    vneid = figures["vneid_auth_rate"]
    assert (vneid.numerator, vneid.denominator, vneid.rank, vneid.met) == (76, 87, 3, True)
    # Payments 5 of 6 succeeded (Hà Nội 1 of 1); activations: 2 of the 3 activated accounts are level 2.
    assert (figures["qr_success_rate"].numerator, figures["qr_success_rate"].denominator) == (5, 6)
    assert figures["qr_success_rate"].rank == 2 and figures["qr_success_rate"].ranked == 2
    assert (figures["vneid_level2_share"].numerator, figures["vneid_level2_share"].denominator) == (2, 3)
    assert page.standing == [
        f"Results returned on time: 90,0{NBSP}%, misses the target of 95,0{NBSP}% (−5,0 points).",
        f"Online dossiers signed in with VNeID: 87,4{NBSP}%, meets the target of 85,0{NBSP}% (+2,4 points)."]
    assert [(row.rank, row.name, row.value, row.target) for row in page.headline_ranking] == [
        (1, "Hà Nội", 0.9, 0.8), (2, "Bắc Ninh", 0.87, 0.85), (3, "Cà Mau", 0.65, 0.8)]


def test_index_is_the_stored_one_ranked(report_store: str) -> None:
    rows = _query(report_store, "SELECT province_code, publicity, progress, digitization, online_service, "
                                f"satisfaction, total FROM pulse.service_index_monthly WHERE month = '{MONTH}'")
    stored = {code: values for code, *values in rows}
    assert set(stored) == {"01", "24", "96"}
    score = _page(report_store, ReportRequest(FIRST, LAST, "24")).index_for_scope
    assert score.month == MONTH
    assert list(score.groups.values()) == pytest.approx(stored["24"][:5])
    assert score.total == pytest.approx(stored["24"][5])
    totals = [values[5] for values in stored.values() if values[5] is not None]
    assert score.ranked == len(totals)
    if score.total is not None:
        assert score.rank == 1 + sum(total > score.total for total in totals)


def test_province_payments_vneid_and_quality(report_store: str) -> None:
    page = _page(report_store, ReportRequest(FIRST, LAST, "27"))  # a legacy code of Bắc Ninh
    assert page.request.province == "24"
    # Local days: the 06:30 payment of 3 March (23:30 UTC on 2 March) counts, the 00:30 one of 5 March does not.
    assert page.categories == [("market", "Traditional markets", 4, 3, 6_000_000, 0.75),
                               ("utility", "Electricity and water bills", 2, 2, 4_000_000, 1.0)]
    assert page.vneid.by_step == {"activated": 3, "approved": 2, "registered": 3}
    assert page.vneid.level2_activated == 2
    quality = page.quality
    assert quality.accepted == {"payments": 6, "dossiers": 200, "identity": 8}
    # too_late twice by the event time they carried (the February one is outside); `invalid` named code 27.
    assert quality.dead_by_reason == {"too_late": 2, "invalid": 1}
    assert quality.dead_share == pytest.approx(3 / 217)


def test_national_report(report_store: str) -> None:
    page = _page(report_store, ReportRequest(FIRST, LAST))
    assert page.scope_name == "All 34 provinces"
    # (87 + 180 + 65) / (100 + 200 + 100), against the national target
    assert page.summary == f"All 34 provinces: online dossiers 83,0{NBSP}%, target 80,0{NBSP}%."
    assert page.quality.dead_by_reason == {"too_late": 3, "invalid": 1, "malformed_json": 1}
    assert page.quality.unattributed == 1
    assert page.quality.accepted == {"payments": 7, "dossiers": 800, "identity": 8}
    assert {s.code for s in page.index_scores} == {"01", "24", "96"}
    scored = [s.total for s in page.index_scores if s.total is not None]
    assert scored == sorted(scored, reverse=True)  # best first


def _text(html: str) -> str:
    inline = re.sub(r"</?strong>", "", html)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", inline))).replace(NBSP, " ")


def test_cli_writes_a_self_contained_page(report_env: str, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", "--from", "2031-03-03", "--to", "2031-03-04", "--province", "24",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Bắc Ninh: online dossiers 87,0{NBSP}%, target 85,0{NBSP}%, rank 2 of 3.")
    html = out.read_text(encoding="utf-8")
    text = _text(html)
    assert "Bắc Ninh: online dossiers 87,0 %, target 85,0 %, rank 2 of 3." in text
    assert "87 of 100 · target 85,0 % ✓ · rank 2 of 3" in text
    assert "1 Hà Nội 90,0 % 80,0 % 200 95,0 %" in text
    assert "2 Bắc Ninh 87,0 % 85,0 % 100 90,0 %" in text
    assert "Traditional markets 4 3 75,0 % 6,0 tr ₫" in text
    assert "Registered: 3 · Approved: 2 · Activated in the app: 3 · level 2: 2 (66,7 %)" in text
    assert "Dead-lettered: 3 (1,38 %), of which too late: 2." in text
    assert "Events accepted (by event time in the period): 214 (payments 6, dossier events 200, VNeID 8)." in text
    # Self-contained: no URL to fetch anything from, no script.
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)
    assert "<script" not in html and "@import" not in html
    assert not re.search(r"url\((?!#)", html)  # only references inside the page's own SVGs
    assert html.count("<svg") == 7


def test_report_refuses_bad_requests(report_env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(main, ["report", "--from", "2031-03-03", "--to", "2031-03-04", "--province", "99",
                                   "--out", str(tmp_path / "x.html")])
    assert unknown.exit_code == 1 and "unknown province code '99'" in unknown.output
    backwards = runner.invoke(main, ["report", "--from", "2031-03-04", "--to", "2031-03-03",
                                     "--out", str(tmp_path / "x.html")])
    assert backwards.exit_code == 1 and "before --from" in backwards.output
    assert not (tmp_path / "x.html").exists()


def test_report_reads_only_and_names_missing_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"chdb://{tmp_path / 'empty'}"
    monkeypatch.setenv("PULSE_CLICKHOUSE_URL", url)
    monkeypatch.setenv("PULSE_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(main, ["report", "--from", "2031-03-03", "--to", "2031-03-04",
                                       "--out", str(tmp_path / "x.html")])
    assert result.exit_code == 1
    assert "the store has no table pulse.kpi_daily, pulse.targets" in result.output
    assert _query(url, "SELECT count() FROM system.tables WHERE database = 'pulse'") == [(0,)]  # nothing created
    with pytest.raises(ReportError):
        ReportRequest(LAST, FIRST).validated()


def test_index_rows_without_a_total_are_listed_unranked() -> None:
    from datetime import date

    from pulse.report.content import service_index_scores

    rows = [(date(2031, 3, 1), "24", 15.0, 18.0, 20.0, 19.0, None, None),  # no ratings: satisfaction unscored
            (date(2031, 3, 1), "01", 16.0, 19.0, 21.0, 20.0, 17.0, 93.0),
            (date(2031, 3, 1), "96", 12.0, 14.0, 15.0, 16.0, 13.0, 70.0)]
    scores = service_index_scores(rows)
    assert [(s.code, s.total, s.rank, s.ranked) for s in scores] == [("01", 93.0, 1, 2), ("96", 70.0, 2, 2),
                                                                     ("24", None, None, 2)]
    assert scores[2].groups["satisfaction"] is None and scores[2].groups["progress"] == 18.0
