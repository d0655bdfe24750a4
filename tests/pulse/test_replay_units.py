"""Replay building blocks without a broker: option parsing, file cursors, chunking and pacing,
checkpoint identity, dry runs through the pipeline, and the progress bar."""
from __future__ import annotations

import gzip
import io
import json
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from pulse.cli import main
from pulse.progress import Tracker
from pulse.replay import (
    Checkpoint,
    EventTimePacer,
    FileSource,
    OffsetRange,
    ReplayOptions,
    chunks,
    event_time_of,
    parse_offsets,
    parse_speed,
    parse_time,
    redact_url,
    run_replay,
)
from pulse.settings import Settings, get_settings
from tests.support.messages import activation


def write_lines(path: Path, lines: list[bytes]) -> Path:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def activations(count: int, start_second: int = 0, step_s: int = 1) -> list[bytes]:
    return [activation(time.strftime("%H:%M:%S", time.gmtime(start_second + n * step_s)), "01")
            for n in range(count)]


def test_parse_offsets_is_half_open_and_strict() -> None:
    assert parse_offsets("a.b-c:0:5-10, t:3:7-") == [OffsetRange("a.b-c", 0, 5, 10), OffsetRange("t", 3, 7, None)]
    for bad in ("t:0:5-5", "t:0:9-3", "t:x:1-2", "t:1", "", "t:-1:0-2"):
        with pytest.raises(ValueError):
            parse_offsets(bad)


def test_parse_time_needs_an_offset_and_speed_is_max_or_positive() -> None:
    assert parse_time("2026-01-05T07:00:00+07:00").timestamp() == parse_time("2026-01-05T00:00:00Z").timestamp()
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_time("2026-01-05T00:00:00")
    with pytest.raises(ValueError):
        parse_time("yesterday")
    assert parse_speed("max") is None and parse_speed("60") == 60.0
    for bad in ("0", "-2", "fast"):
        with pytest.raises(ValueError):
            parse_speed(bad)


def test_event_time_and_url_redaction() -> None:
    assert event_time_of(activation("00:00:10", "01")) == parse_time("2026-01-05T00:00:10Z").timestamp()
    assert event_time_of(b"not json") is None and event_time_of(None) is None
    assert redact_url("http://user:secret@ch.example:8123/pulse") == "http://ch.example:8123/pulse"
    assert redact_url("chdb:///var/lib/pulse/clickhouse") == "chdb:///var/lib/pulse/clickhouse"


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_file_cursor_resumes_at_the_exact_line(tmp_path: Path, name: str) -> None:
    lines = activations(50)
    lines.insert(10, b"")  # blank lines are skipped but counted as lines
    path = write_lines(tmp_path / name, lines)
    source = FileSource(path)
    everything = list(source.records(source.initial_cursor()))
    assert [r.value for r in everything] == [line for line in lines if line]
    cursor = source.advance(source.initial_cursor(), everything[:20])
    assert cursor["line"] == 21  # 20 records and the blank line before the 11th
    rest = list(source.records(cursor))
    assert [r.value for r in rest] == [r.value for r in everything[20:]]
    window = list(source.window(cursor, source.advance(cursor, rest[:5])))
    assert [r.offset for r in window] == [r.offset for r in rest[:5]]


def test_chunks_stop_at_limit_and_on_request(tmp_path: Path) -> None:
    source = FileSource(write_lines(tmp_path / "e.jsonl", activations(25)))
    got = list(chunks(source, source.initial_cursor(), size=10, max_wall_s=60, pacer=None, limit=None,
                      stop=threading.Event()))
    assert [len(c.records) for c in got] == [10, 10, 5] and got[-1].ended == "done"
    assert got[1].start == got[0].end and got[-1].end["line"] == 25
    limited = list(chunks(source, source.initial_cursor(), size=10, max_wall_s=60, pacer=None, limit=12,
                          stop=threading.Event()))
    assert [len(c.records) for c in limited] == [10, 2] and limited[-1].ended == "limit"
    assert limited[-1].end["line"] == 12
    stop = threading.Event()
    stop.set()
    stopped = list(chunks(source, source.initial_cursor(), size=10, max_wall_s=60, pacer=None, limit=None, stop=stop))
    assert [c.ended for c in stopped] == ["stopped"] and stopped[0].end == source.initial_cursor()


def test_pacing_follows_event_time_at_the_given_factor(tmp_path: Path) -> None:
    # 6 events 60 event-seconds apart at factor 300: 5 gaps of 0.2 s.
    source = FileSource(write_lines(tmp_path / "e.jsonl", activations(6, step_s=60)))
    started = time.monotonic()
    got = list(chunks(source, source.initial_cursor(), size=100, max_wall_s=60, pacer=EventTimePacer(300),
                      limit=None, stop=threading.Event()))
    elapsed = time.monotonic() - started
    # It paced (the gaps add up to 1.0 s); the upper bound only catches a hang, not a busy machine.
    assert 0.9 <= elapsed < 30.0
    assert sum(len(c.records) for c in got) == 6
    assert len(got) >= 5, "a chunk must be handed on before each pause, not held back"


def test_checkpoint_identity_depends_on_content_and_target(tmp_path: Path) -> None:
    first = FileSource(write_lines(tmp_path / "a.jsonl", activations(3)))
    same = Checkpoint.locate(tmp_path, first.identity, "kafka://x")
    assert Checkpoint.locate(tmp_path, FileSource(tmp_path / "a.jsonl").identity, "kafka://x") == same
    assert Checkpoint.locate(tmp_path, first.identity, "kafka://y") != same
    write_lines(tmp_path / "a.jsonl", activations(4))
    assert Checkpoint.locate(tmp_path, FileSource(tmp_path / "a.jsonl").identity, "kafka://x") != same


def test_direct_dry_run_uses_the_pipeline_rules_and_writes_nothing(tmp_path: Path) -> None:
    lines = activations(5, start_second=3600) + [activation("00:10:00", "01"), b"{broken", activation("01:00:30", "99")]
    path = write_lines(tmp_path / "e.jsonl", lines)
    settings = Settings(state_dir=tmp_path / "state", kafka_bootstrap="127.0.0.1:1")
    report = run_replay(settings, ReplayOptions(from_file=path, direct=True, dry_run=True))
    assert report["would_write"] == {"identity": {"2026-01-05": {"01": 5}}}
    assert report["would_dead_letter"] == {"too_late": 1, "malformed_json": 1, "unknown_province": 1}
    assert not (tmp_path / "state").exists()


def test_cli_output_is_one_json_line_without_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_STATE_DIR", str(tmp_path / "s"))  # keeps the run's state out of the checkout
    path = write_lines(tmp_path / "e.jsonl", activations(3))
    result = CliRunner().invoke(main, ["replay", "--from-file", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1 and result.stderr == ""
    assert json.loads(result.stdout)["would_send"] == {"identity": {"2026-01-05": {"01": 3}}}
    refused = CliRunner().invoke(main, ["replay", "--from-file", str(path), "--topic", "t"])
    assert refused.exit_code != 0 and "exactly one source" in refused.output
    get_settings.cache_clear()  # the next get_settings() reads the restored environment


def test_progress_bar_shows_rate_event_time_and_eta() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160)
    with Tracker("replay x", 100, enabled=True, console=console) as bar:
        bar.update(events=40, completed=40, position=parse_time("2026-01-05T08:30:00Z").timestamp())
        time.sleep(0.3)
        bar.update(events=40, completed=80)
    text = buffer.getvalue()
    assert "replay x" in text and "80 events" in text and "/s" in text
    assert "at 2026-01-05 08:30:00Z" in text and "ETA" in text
    silent = Tracker("quiet", 10, enabled=False)
    with silent:
        silent.update(events=5)
    assert silent.events == 5
