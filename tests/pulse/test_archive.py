"""`pulse archive`: raw values byte for byte, and archive -> replay reproduces the same window tables."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from pulse.settings import STREAM_TOPICS, Settings
from tests.pulse.test_replay import (
    check_truth,
    direct_env,
    make_events,
    plain_lines,
    run_json,
    window_rows,
)
from tests.support.services import PulseEnv, WorkerProcess
from tests.support.tables import dead_letter_reasons


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def test_archive_then_replay_reproduces_the_same_window_tables(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = make_events(pulse_env, tmp_path / "events.jsonl", seed=61)
    lines = plain_lines(events)
    since = datetime.now(timezone.utc)
    worker = WorkerProcess(pulse_env)
    try:
        pulse_env.pulse("replay", "--from-file", str(events), "--wait", "--timeout", "180")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    until = datetime.now(timezone.utc) + timedelta(milliseconds=1)

    out = tmp_path / "incident.jsonl.gz"
    topics = [arg for topic in STREAM_TOPICS.values() for arg in ("--topic", topic)]
    report = run_json(pulse_env, "archive", *topics, "--since", _iso(since), "--until", _iso(until), "--out", str(out))
    assert report["archived"] == len(lines) and report["left_out"] == {}
    assert sorted(plain_lines(out)) == sorted(lines), "the archive must hold the values exactly as sent"
    again = tmp_path / "again.jsonl.gz"
    run_json(pulse_env, "archive", *topics, "--since", _iso(since), "--until", _iso(until), "--out", str(again))
    assert again.read_bytes() == out.read_bytes(), "the same range must give the same bytes"

    replayed = direct_env(pulse_env, tmp_path, "replayed")
    run_json(replayed, "replay", "--from-file", str(out), "--direct")
    assert window_rows(replayed.chdb_url) == window_rows(pulse_env.chdb_url)
    assert dead_letter_reasons(replayed.chdb_url) == dead_letter_reasons(pulse_env.chdb_url)
    check_truth(replayed.chdb_url, events)


def test_archive_leaves_out_what_a_line_cannot_hold(kafka_settings: Settings, pulse_env: PulseEnv,
                                                    tmp_path: Path) -> None:
    topic = f"archive-odd-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    values = [b'{"a":1}', None, b"", b'{"b":\n2}', b'{"c":"\\u00e9 \xc3\xa9"}', b"\xff\xfe not utf-8"]
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap, acks="all")
    try:
        for value in values:
            producer.send(topic, value=value, key=b"k", partition=0).get(timeout=30)
    finally:
        producer.close(timeout=10)
    out = tmp_path / "odd.jsonl"
    report = run_json(pulse_env, "archive", "--from-offsets", f"{topic}:0:0-", "--out", str(out))
    assert report["left_out"] == {"tombstone": 1, "empty": 1, "line_break": 1}
    assert out.read_bytes() == b'{"a":1}\n{"c":"\\u00e9 \xc3\xa9"}\n\xff\xfe not utf-8\n'
    assert not list(tmp_path.glob(".odd.jsonl.partial*"))
