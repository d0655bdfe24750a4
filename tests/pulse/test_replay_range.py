"""`pulse replay --topic T --since --until` and `--from-offsets`: exactly the messages in the range.

Messages are produced into a topic of the test's own with explicit timestamps right at and next to
the boundaries (and one out of timestamp order inside the offset range), so [since, until) is checked
to the millisecond.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from pulse.kafka_tools import end_offsets
from pulse.settings import TOPIC_PAYMENTS, Settings
from tests.pulse.test_replay import direct_env, query_rows, run_json
from tests.support.services import PulseEnv, topic_messages
from tests.test_end_to_end import simulate

SINCE = datetime(2025, 3, 1, tzinfo=timezone.utc)
SINCE_MS = int(SINCE.timestamp() * 1000)
UNTIL_MS = SINCE_MS + 3_600_000
# The same range written with a +07:00 offset, as an operator in Hanoi would.
SINCE_TEXT, UNTIL_TEXT = "2025-03-01T07:00:00+07:00", "2025-03-01T08:00:00.000+07:00"
LAYOUT = {  # partition -> message timestamps, in offset order
    0: [SINCE_MS - 1, SINCE_MS, SINCE_MS + 1000, UNTIL_MS - 1, UNTIL_MS, UNTIL_MS + 1000],
    1: [SINCE_MS - 1, SINCE_MS, SINCE_MS - 5, UNTIL_MS - 1, UNTIL_MS],  # SINCE_MS - 5 sits inside the offsets
}


@dataclass
class Placed:
    topic: str
    messages: list[tuple[int, int, int, bytes, bytes]]  # partition, offset, timestamp, key, value

    def values(self, predicate) -> list[bytes]:
        return sorted(value for partition, offset, ts, _, value in self.messages if predicate(partition, offset, ts))

    def in_range(self) -> list[bytes]:
        return self.values(lambda _p, _o, ts: SINCE_MS <= ts < UNTIL_MS)


@pytest.fixture(scope="module")
def placed(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Placed]:
    work = tmp_path_factory.mktemp("range")
    env = PulseEnv(state_dir=work / "state", bootstrap=kafka_settings.kafka_bootstrap)
    events = work / "events.jsonl"
    simulate(env, events, 300, seed=41, faults="")
    payments = [line for line in events.read_bytes().splitlines() if b'"type":"payment"' in line]
    topic = f"replay-source-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    try:
        # The records carry 2025 timestamps: with the broker's time retention (7 days) its cleaner may
        # delete them in the middle of the module, so this topic keeps everything.
        admin.create_topics([NewTopic(topic, len(LAYOUT), 1, topic_configs={"retention.ms": "-1"})])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap, acks="all")
    messages = []
    try:
        index = 0
        for partition, stamps in LAYOUT.items():
            for offset, stamp in enumerate(stamps):
                value = payments[index]
                key = json.loads(value)["event_id"].encode()
                index += 1
                metadata = producer.send(topic, value=value, key=key, partition=partition,
                                         timestamp_ms=stamp).get(timeout=30)
                assert (metadata.partition, metadata.offset) == (partition, offset)
                messages.append((partition, offset, stamp, key, value))
    finally:
        producer.close(timeout=10)
    yield Placed(topic, messages)
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


def appended(env: PulseEnv, topic: str, before: dict) -> list:
    return topic_messages(env.bootstrap, topic, {tp: offset for tp, offset in before.items() if tp.topic == topic})


def test_direct_time_range_replay_stores_exactly_the_events_in_since_until(
        placed: Placed, pulse_env: PulseEnv, tmp_path: Path) -> None:
    env = direct_env(pulse_env, tmp_path, "direct")
    report = run_json(env, "replay", "--topic", placed.topic, "--since", SINCE_TEXT, "--until", UNTIL_TEXT,
                      "--direct")
    expected = placed.in_range()
    assert len(expected) == 5
    stored = sorted(row[0] for row in query_rows(env.chdb_url, "SELECT event_id FROM pulse.payments"))
    assert stored == sorted(json.loads(value)["event_id"] for value in expected)
    assert report["read"] == {"payments": 5} and report["complete"]
    # Progress under the pseudo-topic, with the real partitions and offsets of the source.
    offsets = dict(((topic, partition), offset) for topic, partition, offset in query_rows(
        env.chdb_url, "SELECT topic, partition, offset FROM pulse.stream_offsets FINAL"))
    (pseudo,) = {topic for topic, _ in offsets}
    assert pseudo.startswith(f"replay:{placed.topic}@") and pseudo.endswith("/payments")
    assert offsets == {(pseudo, 0): 3, (pseudo, 1): 3}


def test_time_range_replay_into_kafka_sends_exactly_the_range_with_original_keys(
        placed: Placed, pulse_env: PulseEnv) -> None:
    before = end_offsets(pulse_env.bootstrap, [TOPIC_PAYMENTS])
    dry = run_json(pulse_env, "replay", "--topic", placed.topic, "--since", SINCE_TEXT, "--until", UNTIL_TEXT,
                   "--dry-run")
    assert dry["messages"] == 5
    assert end_offsets(pulse_env.bootstrap, [TOPIC_PAYMENTS]) == before
    report = run_json(pulse_env, "replay", "--topic", placed.topic, "--since", SINCE_TEXT, "--until", UNTIL_TEXT)
    assert report["sent"] == {"payments": 5}
    sent = appended(pulse_env, TOPIC_PAYMENTS, before)
    assert sorted(message.value for message in sent) == placed.in_range()
    keys = {value: key for _, _, _, key, value in placed.messages}
    assert all(message.key == keys[message.value] for message in sent)


def test_replay_from_offsets_takes_start_to_end_exclusive(placed: Placed, pulse_env: PulseEnv) -> None:
    before = end_offsets(pulse_env.bootstrap, [TOPIC_PAYMENTS])
    report = run_json(pulse_env, "replay", "--from-offsets", f"{placed.topic}:0:1-3,{placed.topic}:1:3-")
    assert report["sent"] == {"payments": 4}
    expected = placed.values(lambda p, o, _ts: (p == 0 and 1 <= o < 3) or (p == 1 and o >= 3))
    assert sorted(message.value for message in appended(pulse_env, TOPIC_PAYMENTS, before)) == expected


def test_bad_ranges_are_refused_with_a_message(placed: Placed, pulse_env: PulseEnv) -> None:
    naive = pulse_env.pulse("replay", "--topic", placed.topic, "--since", "2025-03-01T00:00:00",
                            "--until", UNTIL_TEXT, check=False)
    assert naive.returncode != 0 and "no UTC offset" in naive.stderr
    beyond = pulse_env.pulse("replay", "--from-offsets", f"{placed.topic}:0:2-99", check=False)
    assert beyond.returncode != 0 and "holds offsets 0..5" in beyond.stderr
    missing = pulse_env.pulse("replay", "--topic", "no-such-topic", "--since", SINCE_TEXT, "--until", UNTIL_TEXT,
                              check=False)
    assert missing.returncode != 0 and "does not exist" in missing.stderr
