"""Exact windows through crashes, rebalances, broker restarts, sink outages and replays (issue 5).

Each test runs the real worker against the real broker and chDB and requires the window tables to equal
the truth computed independently from the input file.
"""
from __future__ import annotations

import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from pulse import infra
from pulse.settings import Settings
from tests.support.services import PulseEnv, WorkerProcess, wait_for
from tests.support.tables import assert_windows_equal, dead_letter_reasons, stored_windows
from tests.support.truth import expected_windows
from tests.test_end_to_end import ALL_FAULTS, simulate

EVENTS = 12_000


def check_truth(env: PulseEnv, *files: Path) -> None:
    truth = expected_windows(*files)
    assert_windows_equal(truth, stored_windows(env.chdb_url))
    assert dead_letter_reasons(env.chdb_url) == truth.dead_letters


@pytest.fixture
def events_file(pulse_env: PulseEnv, tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    simulate(pulse_env, path, EVENTS, seed=23, faults=ALL_FAULTS)
    return path


def _split(path: Path, first_lines: int) -> tuple[Path, Path]:
    """The file's first lines and the rest, as two files replayed one after the other (same truth)."""
    lines = path.read_bytes().splitlines(keepends=True)
    head, tail = path.with_suffix(".head.jsonl"), path.with_suffix(".tail.jsonl")
    head.write_bytes(b"".join(lines[:first_lines]))
    tail.write_bytes(b"".join(lines[first_lines:]))
    return head, tail


def test_worker_killed_with_sigkill_mid_run_loses_and_doubles_nothing(pulse_env: PulseEnv, events_file: Path) -> None:
    # Not a race with the worker's speed: only part of the events is in Kafka when the kill lands, the rest is
    # replayed after it, so the restarted worker always has work left whatever the machine's load.
    head, tail = _split(events_file, EVENTS * 2 // 3)
    pulse_env.pulse("replay", "--from-file", str(head))
    pulse_env.extra["PULSE_BATCH_MAX_EVENTS"] = "200"  # many small flushes: a kill lands mid-run
    worker = WorkerProcess(pulse_env)
    try:
        wait_for(lambda: pulse_env.stored_count() > 1000, 120, "the worker to store some events")
        killed = worker.faust_process()
        killed.send_signal(signal.SIGKILL)  # the Faust worker itself, mid-run; its supervisor restarts it
        pulse_env.pulse("replay", "--from-file", str(tail))
        wait_for(lambda: worker.faust_process().pid != killed.pid, 60, "the supervisor to restart the worker")
        pulse_env.wait_until_stored()
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert "restarting" in worker.log()
    check_truth(pulse_env, head, tail)


def test_rebalance_between_two_workers(pulse_env: PulseEnv, events_file: Path) -> None:
    first = WorkerProcess(pulse_env, "first")
    second = WorkerProcess(pulse_env, "second")
    try:
        replay = threading.Thread(target=pulse_env.pulse, args=("replay", "--from-file", str(events_file)))
        replay.start()
        wait_for(lambda: pulse_env.stored_count() > 1000, 120, "the group to store some events")
        assert second.stop() == 0, second.log()[-3000:]  # its partitions move to the first worker
        second = WorkerProcess(pulse_env, "second-again")  # and some move back
        replay.join(timeout=120)
        pulse_env.wait_until_stored()
    finally:
        assert first.stop() == 0, first.log()[-3000:]
        assert second.stop() == 0, second.log()[-3000:]
    check_truth(pulse_env, events_file)


def test_broker_restart_mid_run(pulse_env: PulseEnv, events_file: Path, kafka_settings: Settings) -> None:
    pulse_env.pulse("replay", "--from-file", str(events_file))
    pulse_env.extra["PULSE_BATCH_MAX_EVENTS"] = "200"
    worker = WorkerProcess(pulse_env)
    try:
        wait_for(lambda: pulse_env.stored_count() > 1000, 120, "the worker to store some events")
        infra.kafka_service(kafka_settings).stop()
        time.sleep(3)
        infra.up(kafka_settings, with_monitoring=False)
        pulse_env.wait_until_stored(timeout_s=240)
        assert worker.alive(), "the worker died with the broker"
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    check_truth(pulse_env, events_file)


def _metric(port: int, name: str) -> float:
    try:
        response = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except OSError:
        return float("nan")  # not serving yet
    with response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not exposed")


def test_sink_outage_pauses_consumption_within_bounds_and_loses_nothing(
        pulse_env: PulseEnv, events_file: Path, free_port: int) -> None:
    outage = pulse_env.state_dir / "clickhouse-down"
    outage.parent.mkdir(parents=True, exist_ok=True)
    outage.touch()
    pulse_env.extra.update(PULSE_SINK_OUTAGE_FLAG=str(outage), PULSE_METRICS_PORT=str(free_port),
                           PULSE_SINK_RETRY_MAX_S="1")
    pulse_env.pulse("replay", "--from-file", str(events_file))
    worker = WorkerProcess(pulse_env)
    try:
        wait_for(lambda: _metric(free_port, "pulse_sink_failures_total") >= 3, 120, "retries against the outage")
        time.sleep(2)  # let the consumer fill what it may: the buffer must stay bounded
        buffered = _metric(free_port, "pulse_sink_buffered_rows")
        limit = _metric(free_port, "pulse_sink_buffer_limit_rows")
        assert 0 < buffered <= limit
        assert pulse_env.stored_count() == 0, "nothing may be committed while the sink is down"
        outage.unlink()
        pulse_env.wait_until_stored()
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    check_truth(pulse_env, events_file)


def test_replaying_the_same_events_twice_changes_no_window(pulse_env: PulseEnv, events_file: Path) -> None:
    worker = WorkerProcess(pulse_env)
    try:
        pulse_env.pulse("replay", "--from-file", str(events_file), "--wait")
        first = stored_windows_while_running(pulse_env)
        pulse_env.pulse("replay", "--from-file", str(events_file), "--wait")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert stored_windows(pulse_env.chdb_url) == first
    assert_windows_equal(expected_windows(events_file), first)


def stored_windows_while_running(env: PulseEnv) -> dict:
    """The worker releases the embedded store between flushes, so a reader can take a turn."""
    return stored_windows(env.chdb_url)
