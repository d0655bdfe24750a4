"""The report in a real browser (Debian's headless Chromium over the DevTools protocol), and its PDF.

The checker is proven able to fail: pages that fetch something, log an error or lose a chart, and a
blank PDF page, must each be caught.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pulse.cli import main
from tests.support.browser_check import check_page, first_pdf_page, pixel_stddev

CHARTS = {"ranking", "trend", "dossiers", "payments", "service_index", "categories", "vneid"}
NOT_BLANK = 8.0  # grey-level standard deviation; a blank page is 0, the report's first page about 60


@pytest.fixture(scope="module")
def report_files(report_store: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PULSE_CLICKHOUSE_URL", report_store)
        patch.setenv("PULSE_STATE_DIR", str(out / "state"))
        result = CliRunner().invoke(main, ["report", "--from", "2031-03-03", "--to", "2031-03-04", "--province", "24",
                                           "--out", str(out / "report.html"), "--pdf", str(out / "report.pdf")])
    assert result.exit_code == 0, result.output
    return out / "report.html", out / "report.pdf"


def _save(data: bytes, path: Path) -> Path:
    path.write_bytes(data)
    return path


def test_report_renders_in_chromium_without_errors_or_requests(report_files: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    html, _ = report_files
    check = check_page(html)
    assert check.problems == []
    assert {chart["name"] for chart in check.charts} == CHARTS
    assert all(chart["drawn"] > 50 and chart["width"] > 300 for chart in check.charts)
    assert pixel_stddev(_save(check.screenshot_png, tmp_path / "shot.png")) > NOT_BLANK
    assert pixel_stddev(first_pdf_page(_save(check.pdf, tmp_path / "cdp.pdf"), tmp_path)) > NOT_BLANK


def test_report_on_a_phone_screen(report_files: tuple[Path, Path]) -> None:
    check = check_page(report_files[0], width=390, height=844)
    assert check.problems == []
    assert all(chart["width"] >= 300 for chart in check.charts)


def test_cli_pdf_has_a_drawn_first_page_and_the_summary(report_files: tuple[Path, Path], tmp_path: Path) -> None:
    _, pdf = report_files
    assert pdf.read_bytes().startswith(b"%PDF")
    assert pixel_stddev(first_pdf_page(pdf, tmp_path)) > NOT_BLANK
    text = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(pdf), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    assert "Bắc Ninh: online dossiers 87,0" in text and "rank 2 of 3" in text


def _variant(html: Path, tmp_path: Path, name: str, change: callable) -> Path:  # type: ignore[valid-type]
    page = tmp_path / f"{name}.html"
    page.write_text(change(html.read_text(encoding="utf-8")), encoding="utf-8")
    return page


def test_checker_catches_an_outside_request(report_files: tuple[Path, Path], tmp_path: Path) -> None:
    bad = _variant(report_files[0], tmp_path, "image", lambda s: s.replace(
        "<main>", '<main><img src="http://127.0.0.1:9/logo.png" alt="">', 1))
    check = check_page(bad)
    assert check.requests == ["http://127.0.0.1:9/logo.png"]
    assert any("Failed to load resource" in error for error in check.console_errors)


def test_checker_catches_a_script_fetch_and_a_console_error(report_files: tuple[Path, Path], tmp_path: Path) -> None:
    bad = _variant(report_files[0], tmp_path, "script", lambda s: s.replace(
        "</body>", '<script>console.error("chart data missing"); fetch("http://127.0.0.1:9/api")'
                   '.catch(() => {});</script></body>', 1))
    check = check_page(bad)
    assert "chart data missing" in check.console_errors
    assert "http://127.0.0.1:9/api" in check.requests


def test_checker_catches_a_chart_that_did_not_render(report_files: tuple[Path, Path], tmp_path: Path) -> None:
    def empty_trend(html: str) -> str:
        return re.sub(r'(<figure class="chart" data-chart="trend">).*?(</figure>)', r"\1<svg></svg>\2", html,
                      flags=re.S)
    check = check_page(_variant(report_files[0], tmp_path, "empty", empty_trend))
    assert check.empty_charts == ["trend"]
    assert check.problems == ["chart did not render: trend"]


def test_blank_page_is_caught(tmp_path: Path) -> None:
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><html><head><meta charset='utf-8'></head><body></body></html>")
    check = check_page(blank)
    assert check.problems == []  # nothing wrong in the browser, but nothing on paper either
    assert pixel_stddev(first_pdf_page(_save(check.pdf, tmp_path / "blank.pdf"), tmp_path)) < 1.0
