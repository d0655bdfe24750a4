"""`pulse report` against the hand-written store: every figure checked against a hand computation."""
from __future__ import annotations

import re
from datetime import date
from html import unescape
from pathlib import Path

import pytest
from click.testing import CliRunner

from pulse.cli import main
from pulse.report.build import ReportError, ReportRequest, build
from pulse.report.formatting import vn_decimal, vn_int, vn_money_millions, vn_pct
from sinks.client import Warehouse
from tests.pulse.report.conftest import FIRST, LAST

NBSP = "\u00a0"


def test_vietnamese_number_format() -> None:
    assert vn_int(1234567) == "1.234.567"
    assert vn_int(999) == "999"
    assert vn_decimal(1234.56) == "1.234,6"
    assert vn_pct(0.875) == f"87,5{NBSP}%"
    assert vn_pct(0.8) == f"80,0{NBSP}%"
    assert vn_pct(None) == "–"
    assert vn_money_millions(6_000_000) == f"6,0{NBSP}tr{NBSP}₫"


def _page(url: str, request: ReportRequest):  # noqa: ANN202
    warehouse = Warehouse(url, keep_open=False)
    try:
        with warehouse.lease() as client:
            return build(client, warehouse.database, request)
    finally:
        warehouse.close()


def test_province_figures_ranks_and_summary(report_store: str) -> None:
    page = _page(report_store, ReportRequest(FIRST, LAST, "24"))
    # online 40+47 of 50+50 (the 4 March row is outside); own target 85 % beats the national 80 %; Hà Nội 90 %
    # is first, Cà Mau 65 % third.
    assert page.summary == f"Bắc Ninh: online dossiers 87,0{NBSP}%, target 85,0{NBSP}%, rank 2 of 3."
    figures = {f.kpi.name: f for f in page.figures}
    assert set(figures) == {"online_dossier_rate", "on_time_rate", "overdue_open"}
    assert (figures["online_dossier_rate"].numerator, figures["online_dossier_rate"].denominator) == (87, 100)
    assert figures["online_dossier_rate"].target.source == "Bắc Ninh resolution (test)"
    assert figures["on_time_rate"].value == pytest.approx(0.9)
    assert (figures["on_time_rate"].rank, figures["on_time_rate"].met) == (2, False)  # 95 % > 90 % > 80 %
    # Overdue while open: lower is better. 5/40 = 12,5 % against 2,5 % (Hà Nội) and 25 % (Cà Mau); target 10 %.
    assert figures["overdue_open"].value == pytest.approx(0.125)
    assert (figures["overdue_open"].rank, figures["overdue_open"].met) == (2, False)
    assert page.standing == [f"Results returned on time: 90,0{NBSP}%, misses the target of 95,0{NBSP}% (−5,0 points).",
                             f"Open dossiers past their due time: 12,5{NBSP}%, misses the target of 10,0{NBSP}% "
                             "(+2,5 points)."]
    assert [(row.rank, row.name, row.value) for row in page.headline_ranking] == [
        (1, "Hà Nội", 0.9), (2, "Bắc Ninh", 0.87), (3, "Cà Mau", 0.65)]
    assert [row.target for row in page.headline_ranking] == [0.8, 0.85, 0.8]


def test_province_index_payments_vneid_and_quality(report_store: str) -> None:
    page = _page(report_store, ReportRequest(FIRST, LAST, "27"))  # legacy code of Bắc Ninh
    assert page.request.province == "24"
    score = page.index_for_scope
    assert (score.month, score.total, score.rank, score.ranked) == (date(2026, 3, 1), 88, 2, 3)
    assert score.groups == {"publicity": 15, "progress": 18, "digitization": 20, "online_service": 19,
                            "satisfaction": 16}
    # Local days: the 06:30 payment of 2 March (23:30 UTC on 1 March) counts, the 00:30 one of 4 March does not.
    assert page.categories == [("market", "Traditional markets", 4, 3, 6_000_000, 0.75),
                               ("utility", "Electricity and water bills", 2, 2, 4_000_000, 1.0)]
    assert page.vneid.by_step == {"activated": 3, "approved": 2, "registered": 3}
    assert page.vneid.level2_activated == 2
    quality = page.quality
    assert quality.accepted == {"payments": 6, "dossiers": 3, "identity": 8}
    # too_late twice by the event time they carried (the February one is outside); `invalid` named code 27.
    assert quality.dead_by_reason == {"too_late": 2, "invalid": 1}
    assert quality.dead_share == pytest.approx(3 / 20)


def test_national_report(report_store: str) -> None:
    page = _page(report_store, ReportRequest(FIRST, LAST))
    assert page.scope_name == "All 34 provinces"
    # (87 + 180 + 65) / (100 + 200 + 100), against the national target
    assert page.summary == f"All 34 provinces: online dossiers 83,0{NBSP}%, target 80,0{NBSP}%."
    assert page.quality.dead_by_reason == {"too_late": 3, "invalid": 1, "malformed_json": 1}
    assert page.quality.unattributed == 1
    assert page.quality.accepted["payments"] == 7
    assert [s.code for s in page.index_scores] == ["01", "24", "96"]


def _text(html: str) -> str:
    inline = re.sub(r"</?strong>", "", html)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", inline))).replace(NBSP, " ")


def test_cli_writes_a_self_contained_page(report_env: str, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", "--from", "2026-03-02", "--to", "2026-03-03", "--province", "24",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Bắc Ninh: online dossiers 87,0{NBSP}%, target 85,0{NBSP}%, rank 2 of 3.")
    html = out.read_text(encoding="utf-8")
    text = _text(html)
    assert "Bắc Ninh: online dossiers 87,0 %, target 85,0 %, rank 2 of 3." in text
    assert "87 of 100 · target 85,0 % ✓ · rank 2 of 3" in text
    assert "1 Hà Nội 90,0 % 80,0 % 200 95,0 % 93,0" in text
    assert "2 Bắc Ninh 87,0 % 85,0 % 100 90,0 % 88,0" in text
    assert "Traditional markets 4 3 75,0 % 6,0 tr ₫" in text
    assert "03/2026: 88,0 of 100 points, rank 2 of 3." in text
    assert "Registered: 3 · Approved: 2 · Activated in the app: 3 · level 2: 2 (66,7 %)" in text
    assert "Dead-lettered: 3 (15,00 %), of which too late: 2." in text
    # Self-contained: no URL to fetch anything from, no script.
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)
    assert "<script" not in html and "@import" not in html
    assert not re.search(r"url\((?!#)", html)  # only references inside the page's own SVGs
    assert html.count("<svg") == 7


def test_report_refuses_bad_requests(report_env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(main, ["report", "--from", "2026-03-02", "--to", "2026-03-03", "--province", "99",
                                   "--out", str(tmp_path / "x.html")])
    assert unknown.exit_code == 1 and "unknown province code '99'" in unknown.output
    backwards = runner.invoke(main, ["report", "--from", "2026-03-03", "--to", "2026-03-02",
                                     "--out", str(tmp_path / "x.html")])
    assert backwards.exit_code == 1 and "before --from" in backwards.output
    assert not (tmp_path / "x.html").exists()


def test_report_reads_only_and_names_missing_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"chdb://{tmp_path / 'empty'}"
    monkeypatch.setenv("PULSE_CLICKHOUSE_URL", url)
    monkeypatch.setenv("PULSE_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(main, ["report", "--from", "2026-03-02", "--to", "2026-03-03",
                                       "--out", str(tmp_path / "x.html")])
    assert result.exit_code == 1
    assert "the store has no table pulse.kpi_daily, pulse.targets" in result.output
    warehouse = Warehouse(url, keep_open=False)
    try:
        with warehouse.lease() as client:  # the report created nothing: no database, no table
            assert client.query("SELECT count() FROM system.tables WHERE database = 'pulse'").result_rows == [(0,)]
    finally:
        warehouse.close()
    with pytest.raises(ReportError):
        ReportRequest(LAST, FIRST).validated()
