"""`pulse watch` counts "today" on the local day (Asia/Ho_Chi_Minh) and labels it, with target attainment."""
from __future__ import annotations

from datetime import datetime, timezone

from rich.console import Console

from pulse.watch import WindowBoard, counters_open, local_day_start


def window(table: str, start: str, province: str, **measures: int) -> dict:
    return {"table": table, "window_start": start, "province_code": province, "version": 1, **measures}


def dossiers(start: str, province: str, online: int, offline: int) -> dict:
    return window("dossiers_1m", start, province, submitted_online=online, submitted_offline=offline,
                  submitted_full_process_online=0, completed=0, completed_on_time=0, paid_online=0,
                  vneid_authenticated=0)


def rendered(board: WindowBoard) -> str:
    console = Console(width=250, record=True)
    with console.capture() as capture:
        console.print(board.render())
    return capture.get()


def test_local_day_starts_at_midnight_in_vietnam() -> None:
    assert local_day_start(datetime(2026, 3, 2, 16, 59, tzinfo=timezone.utc)) == datetime(
        2026, 3, 1, 17, 0, tzinfo=timezone.utc)
    assert local_day_start(datetime(2026, 3, 2, 17, 0, tzinfo=timezone.utc)) == datetime(
        2026, 3, 2, 17, 0, tzinfo=timezone.utc)


def test_counter_hours_are_local_office_hours() -> None:
    assert counters_open(datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc))  # Monday 09:00 ICT
    assert not counters_open(datetime(2026, 3, 2, 5, 0, tzinfo=timezone.utc))  # Monday 12:00 ICT (lunch)
    assert not counters_open(datetime(2026, 3, 7, 2, 0, tzinfo=timezone.utc))  # Saturday 09:00 ICT


def test_today_counts_from_local_midnight_and_shows_attainment() -> None:
    board = WindowBoard()
    # 01 (Hà Nội, target 80% online in 2026): 16:30 UTC on 1 March is 23:30 ICT, yesterday: not counted.
    board.add(dossiers("2026-03-01T16:30:00+00:00", "01", online=0, offline=50))
    # 01:30 and 03:00 UTC on 2 March are 08:30 and 10:00 ICT today: 6 of 10 online -> 60%, 75% of target.
    board.add(dossiers("2026-03-02T01:30:00+00:00", "01", online=2, offline=4))
    board.add(dossiers("2026-03-02T03:00:00+00:00", "01", online=4, offline=0))
    text = rendered(board)
    assert "window 2026-03-02 10:00 ICT (UTC+7); 'today' = since 00:00 ICT" in text
    row = next(line for line in text.splitlines() if "01 Hà Nội" in line)
    assert " 60.0% " in row and " 75% " in row
    assert "Counters (bộ phận một cửa) are closed" not in text  # Monday 10:00 ICT: open


def test_a_note_says_why_online_is_near_100_percent_after_hours() -> None:
    board = WindowBoard()
    board.add(dossiers("2026-03-02T13:00:00+00:00", "01", online=3, offline=0))  # Monday 20:00 ICT
    text = rendered(board)
    assert "Counters (bộ phận một cửa) are closed at Mon 20:00 ICT" in text
