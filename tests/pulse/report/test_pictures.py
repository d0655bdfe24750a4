"""The README's `pulse watch` picture: drawn by rich from stored windows, turned into PNG by Chromium offline."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path

from pulse.report.pictures import MAX_PNG_BYTES, watch_picture, watch_rows
from pulse.settings import Settings
from tests.support.browser_check import check_page, pixel_stddev

UNTIL = datetime(2031, 3, 4, 10, 0, tzinfo=timezone(timedelta(hours=7)))


def test_watch_rows_are_the_day_up_to_the_moment(report_store: str, tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, clickhouse_url=report_store)
    rows = watch_rows(settings, UNTIL)
    # 4 March local from 00:00 to 10:00: the 09:00 windows (02:00 UTC); 3 March's rows are another day.
    assert [(row["table"], row["window_start"], row["province_code"]) for row in rows] == [
        ("dossiers_1m", "2031-03-04T02:00:00+00:00", "24"), ("id_activations_1m", "2031-03-04T02:00:00+00:00", "24")]
    assert rows[0]["submitted_online"] == 47 and rows[1]["activations"] == 1


def test_watch_picture_is_drawn_offline(report_store: str, tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, clickhouse_url=report_store)
    watch_picture(settings, tmp_path, tmp_path, UNTIL)
    text = unescape((tmp_path / "watch.html").read_text(encoding="utf-8")).replace("\u00a0", " ")
    # That morning in Bắc Ninh: 47 of 50 dossiers online, 45 of 50 returned on time, 1 activation.
    assert "24 Bắc Ninh" in text and "94.0%" in text and "90.0%" in text
    check = check_page(tmp_path / "watch.html")
    assert check.problems == []  # rich's CDN font was taken out: nothing is fetched
    png = tmp_path / "watch.png"
    assert png.stat().st_size < MAX_PNG_BYTES
    assert pixel_stddev(png) > 8.0
