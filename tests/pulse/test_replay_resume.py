"""`pulse replay --resume`: an interrupted replay continues from its checkpoint and sends nothing twice.

Interruptions: SIGKILL mid-run (Kafka target), a crash right after the broker took a chunk but before
the checkpoint said so (in-process, all or half of the chunk delivered), `--limit`, and SIGINT.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pulse import replay
from pulse.kafka_tools import end_offsets
from pulse.settings import STREAM_TOPICS, Settings
from tests.pulse.test_replay import check_truth, direct_env, input_topic_total, make_events, plain_lines, run_json
from tests.support.services import PulseEnv, WorkerProcess, topic_messages, wait_for


def checkpoint_line(env: PulseEnv) -> int:
    files = list((env.state_dir / replay.CHECKPOINT_DIR).glob("*.json"))
    if not files:
        return 0
    try:
        return json.loads(files[0].read_text())["cursor"]["line"]
    except (ValueError, KeyError):
        return 0  # caught between write and rename: the next poll sees it


def start_replay(env: PulseEnv, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pulse.cli", "replay", *args], env=env.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(process: subprocess.Popen) -> tuple[str, str]:
    if process.poll() is None:
        process.kill()
    return process.communicate(timeout=30)


def appended_values(env: PulseEnv, before: dict) -> list[bytes]:
    return sorted(message.value for topic in STREAM_TOPICS.values()
                  for message in topic_messages(env.bootstrap, topic,
                                                {tp: o for tp, o in before.items() if tp.topic == topic}))


def test_killed_kafka_replay_resumes_without_sending_anything_twice(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = make_events(pulse_env, tmp_path / "events.jsonl", seed=51)
    lines = plain_lines(events)
    before = end_offsets(pulse_env.bootstrap, STREAM_TOPICS.values())
    process = start_replay(pulse_env, "--from-file", str(events), "--speed", "4")  # ~11 s of wall time
    try:
        wait_for(lambda: checkpoint_line(pulse_env) > 300 or process.poll() is not None, 60,
                 "the replay to checkpoint a few chunks")
        assert process.poll() is None, stop(process)
        process.send_signal(signal.SIGKILL)
    finally:
        stop(process)
    interrupted = input_topic_total(pulse_env) - sum(before.values())
    assert 0 < interrupted < len(lines), "the kill came too late (or too early) to test anything"

    report = run_json(pulse_env, "replay", "--from-file", str(events), "--resume")
    assert report["resumed"] and report["complete"], report
    assert report["resumed_from"]["line"] > 0
    assert sum(report["sent"].values()) == len(lines) - interrupted
    assert sum(report["total_sent"].values()) == len(lines)
    assert appended_values(pulse_env, before) == sorted(lines), "lines lost or sent twice"

    worker = WorkerProcess(pulse_env)
    try:
        pulse_env.wait_until_stored()
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    check_truth(pulse_env.chdb_url, events)  # a line sent twice would show as an extra dead letter


class Crash(Exception):
    pass


@pytest.mark.parametrize("delivered", ["whole chunk", "half the chunk"])
def test_resume_sends_only_what_the_broker_lacks_of_an_unconfirmed_chunk(
        kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delivered: str) -> None:
    env = PulseEnv(state_dir=tmp_path / "state", bootstrap=kafka_settings.kafka_bootstrap)
    events = make_events(env, tmp_path / "events.jsonl.gz", events=2000, seed=52)
    lines = plain_lines(events)
    settings = Settings(state_dir=env.state_dir, kafka_bootstrap=env.bootstrap)
    chunk = 300
    monkeypatch.setattr(replay, "KAFKA_CHUNK", chunk)
    original = replay.KafkaTarget._send
    calls: list[int] = []

    def crash_after_third_send(self: replay.KafkaTarget, records: list) -> object:
        calls.append(len(records))
        if len(calls) == 3:  # the broker has (part of) the chunk, the checkpoint does not know yet
            original(self, records if delivered == "whole chunk" else records[: len(records) // 2])
            raise Crash
        return original(self, records)

    before = end_offsets(env.bootstrap, STREAM_TOPICS.values())
    monkeypatch.setattr(replay.KafkaTarget, "_send", crash_after_third_send)
    with pytest.raises(Crash):
        replay.run_replay(settings, replay.ReplayOptions(from_file=events))
    already = chunk if delivered == "whole chunk" else chunk // 2
    assert input_topic_total(env) - sum(before.values()) == 2 * chunk + already
    pending = json.loads(next((env.state_dir / replay.CHECKPOINT_DIR).glob("*.json")).read_text())["pending"]
    assert pending and pending["from"]["line"] == 2 * chunk and pending["to"]["line"] == 3 * chunk

    monkeypatch.setattr(replay.KafkaTarget, "_send", original)
    report = replay.run_replay(settings, replay.ReplayOptions(from_file=events, resume=True))
    assert report["interrupted_chunk"] == {"already_sent": already, "sent_now": chunk - already}
    assert report["complete"] and sum(report["total_sent"].values()) == len(lines)
    assert appended_values(env, before) == sorted(lines)


def test_direct_replay_stopped_by_limit_resumes_without_double_counting(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = make_events(pulse_env, tmp_path / "events.jsonl.gz", seed=53)
    lines = plain_lines(events)
    env = direct_env(pulse_env, tmp_path, "direct")
    first = run_json(env, "replay", "--from-file", str(events), "--direct", "--limit", "1000")
    assert first["stopped"] == "limit" and not first["complete"] and sum(first["read"].values()) == 1000
    assert json.loads(Path(first["checkpoint"]).read_text())["cursor"]["line"] == 1000

    second = run_json(env, "replay", "--from-file", str(events), "--direct", "--resume")
    assert second["resumed"] and second["complete"]
    assert sum(second["read"].values()) == len(lines) - 1000, "resume re-read what was already written"
    assert second["skipped_already_stored"] == 0
    check_truth(env.chdb_url, events)

    third = run_json(env, "replay", "--from-file", str(events), "--direct", "--resume")
    assert third["complete"] and "already complete" in third["note"]


def test_sigint_ends_a_direct_replay_cleanly_and_resume_finishes_it(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = make_events(pulse_env, tmp_path / "events.jsonl", seed=54)
    env = direct_env(pulse_env, tmp_path, "direct")
    process = start_replay(env, "--from-file", str(events), "--direct", "--speed", "4")
    try:
        wait_for(lambda: checkpoint_line(env) > 300 or process.poll() is not None, 60, "a few stored chunks")
        assert process.poll() is None, stop(process)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        stop(process)
    assert process.returncode == 130, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["stopped"] == "stopped" and not report["complete"]
    done = sum(report["read"].values())
    assert 300 < done < len(plain_lines(events))

    resumed = run_json(env, "replay", "--from-file", str(events), "--direct", "--resume")
    assert resumed["complete"] and resumed["skipped_already_stored"] == 0
    assert sum(resumed["read"].values()) + done == len(plain_lines(events))
    check_truth(env.chdb_url, events)


def test_direct_resume_into_a_wiped_store_starts_again_instead_of_losing_lines(
        pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = make_events(pulse_env, tmp_path / "events.jsonl", seed=55)
    env = direct_env(pulse_env, tmp_path, "direct")
    run_json(env, "replay", "--from-file", str(events), "--direct", "--limit", "1000")
    shutil.rmtree(env.state_dir / "clickhouse")  # the checkpoint survives, the data it speaks of does not

    resumed = run_json(env, "replay", "--from-file", str(events), "--direct", "--resume")
    assert "lacks progress" in resumed["restarted_because"]
    assert sum(resumed["read"].values()) == len(plain_lines(events))
    check_truth(env.chdb_url, events)
