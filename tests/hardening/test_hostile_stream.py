"""A mixed stream of valid and hostile messages through the real broker and a running worker (issue 8):
every valid event is counted, every hostile message is a dead letter with its reason, the worker never
restarts, and neither storage, the output topics nor the worker's log hold personal data or secrets."""
from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from kafka import KafkaProducer

from pulse.kafka_tools import end_offsets
from pulse.settings import STREAM_TOPICS, TOPIC_DEADLETTER, TOPIC_WINDOWS
from sinks.client import Warehouse
from tests.hardening.hostile import (
    ACCOUNT,
    CITIZEN_NUMBER,
    SQL,
    activation,
    awkward_valid_events,
    dossier,
    hostile_messages,
    payment,
)
from tests.support.services import PulseEnv, WorkerProcess, topic_messages, wait_for
from tests.support.tables import stored_windows

MAX_BYTES = 262_144
PII_KEY = "pii-key-never-logged-5d1e"
PASSWORD = "s3cr3t-pw-91c2"
COUNTED = {"payments": ("payments_1m", "tx_count"), "dossiers": ("dossiers_1m", "submitted_online"),
           "identity": ("id_activations_1m", "activations")}


def valid_events() -> list[tuple[str, dict]]:
    events = awkward_valid_events()
    for n in range(90):  # three minutes, three provinces, all three streams
        maker, stream = [(payment, "payments"), (dossier, "dossiers"), (activation, "identity")][n % 3]
        events.append((stream, maker(n, n * 2, province_code=("01", "79", "48")[n // 30])))
    return events


def key_of(stream: str, event: dict) -> bytes:
    return (event["dossier_id"] if stream == "dossiers" else event["event_id"]).encode()


def minute(text: str) -> datetime:
    moment = datetime.fromisoformat(text).astimezone(timezone.utc)
    return moment.replace(second=0, microsecond=0)


def test_mixed_valid_and_hostile_stream(pulse_env: PulseEnv) -> None:
    pulse_env.extra.update(PULSE_PII_KEY=PII_KEY, PULSE_MAX_MESSAGE_BYTES=str(MAX_BYTES))
    outputs_since = end_offsets(pulse_env.bootstrap, [TOPIC_DEADLETTER, TOPIC_WINDOWS])
    worker = WorkerProcess(pulse_env)
    first_pid = worker.faust_process().pid
    producer = KafkaProducer(bootstrap_servers=pulse_env.bootstrap, max_request_size=5_000_000, acks="all",
                             linger_ms=5)
    valid = valid_events()
    hostile = hostile_messages(MAX_BYTES)
    sent_valid, sent_hostile = [], []
    try:
        # Valid and hostile interleaved; the three splice messages go together to one partition, in order.
        queue = [("valid", item) for item in valid]
        for index, item in enumerate(hostile):
            queue.insert(min(len(queue), index * 3 + 1), ("hostile", item))
        for kind, item in queue:
            if kind == "valid":
                stream, event = item
                value = json.dumps(event, ensure_ascii=False).encode()
                sent_valid.append((stream, event, producer.send(STREAM_TOPICS[stream], value=value,
                                                                key=key_of(stream, event))))
            else:
                key = b"splice" if item.name.startswith("splice") else f"hostile-{item.name}".encode()
                sent_hostile.append((item, producer.send(STREAM_TOPICS[item.stream], value=item.value, key=key)))
        producer.flush(timeout=60)
        places = {(m.topic, m.partition, m.offset): item
                  for item, future in sent_hostile for m in [future.get(timeout=30)]}
        for _, _, future in sent_valid:
            future.get(timeout=30)
    finally:
        producer.close(timeout=10)

    try:
        pulse_env.wait_until_stored(timeout_s=150)
        assert worker.alive(), worker.log()[-3000:]
        assert worker.faust_process().pid == first_pid, "the worker process died and was restarted"
    finally:
        code = worker.stop()
    log = worker.log()
    assert code == 0, log[-3000:]
    assert "restarting" not in log and "Traceback" not in log, log[-3000:]

    # Every valid event counted, in the window of its event time.
    expected: dict[str, Counter] = {table: Counter() for table, _ in COUNTED.values()}
    for stream, event in valid:
        table, _ = COUNTED[stream]
        expected[table][(minute(event["event_time"]), event["province_code"])] += 1
    windows = stored_windows(pulse_env.chdb_url)
    for table, measure in COUNTED.values():
        stored = Counter({key: measures[measure] for key, measures in windows[table].items() if measures[measure]})
        assert stored == expected[table], f"{table}: {stored} != {expected[table]}"

    # Every hostile message a dead letter with its reason, in the table and on pulse.deadletter.
    warehouse = Warehouse(pulse_env.chdb_url, keep_open=False)
    try:
        with warehouse.lease() as client:
            rows = client.query("SELECT topic, partition, offset, reason, error, key, raw "
                                "FROM pulse.dead_letters FINAL").result_rows
            stored_market_ids = {row[0] for row in client.query("SELECT market_id FROM pulse.payments").result_rows}
            tables = [row[0] for row in client.query("SELECT name FROM system.tables WHERE database = 'pulse'"
                                                     ).result_rows]
            dump = "\n".join(json.dumps(row, default=str) for table in tables
                             for row in client.query(f"SELECT * FROM pulse.{table}").result_rows)
    finally:
        warehouse.close()
    by_place = {(topic, partition, offset): (reason, error) for topic, partition, offset, reason, error, *_ in rows}
    assert {place: item.reason for place, item in places.items()} == {
        place: by_place.get(place, ("missing", ""))[0] for place in places}
    assert len(rows) == len(hostile), "a valid event was dead-lettered"
    assert all(error for _, error in by_place.values())
    assert SQL in stored_market_ids  # stored as data, and every table is still there:
    assert {"payments", "dossier_events", "id_activations", "dead_letters", "payments_1m", "dossiers_1m",
            "id_activations_1m", "stream_offsets"} <= set(tables)

    published = topic_messages(pulse_env.bootstrap, TOPIC_DEADLETTER, outputs_since)
    records = [json.loads(message.value) for message in published]
    on_topic = {(r["topic"], r["partition"], r["offset"]): r["reason"] for r in records}
    assert {place: item.reason for place, item in places.items()} == {place: on_topic.get(place) for place in places}
    assert max(len(message.value) for message in published) < 1_000_000  # multi-MB input, small dead letter
    windows_published = topic_messages(pulse_env.bootstrap, TOPIC_WINDOWS, outputs_since)
    assert windows_published, "no window rows were published"

    # Personal data and secrets: nowhere in storage, on the output topics or in the worker's log.
    outputs = "\n".join((m.key or b"").decode("utf-8", "replace") + " " + m.value.decode("utf-8", "replace")
                        for m in [*published, *windows_published])
    for name, text in (("storage", dump), ("topics", outputs), ("worker log", log)):
        for secret in (ACCOUNT, CITIZEN_NUMBER, PII_KEY):
            assert secret not in text, f"{secret} found in {name}"
    assert re.search(r"\*{11}8901", dump), "the bad-QR dead letter should keep the account's last four digits"


def test_clickhouse_password_stays_out_of_the_worker_log(pulse_env: PulseEnv, tmp_path: Path) -> None:
    """A worker whose ClickHouse server is unreachable logs its retries, never the URL's password."""
    pulse_env.extra.update(PULSE_CLICKHOUSE_URL=f"http://pulse:{PASSWORD}@127.0.0.1:1/pulse",
                           PULSE_PII_KEY=PII_KEY, PULSE_SINK_RETRY_MAX_S="1")
    worker = WorkerProcess(pulse_env)
    producer = KafkaProducer(bootstrap_servers=pulse_env.bootstrap)
    try:
        event = payment(1)
        producer.send(STREAM_TOPICS["payments"], value=json.dumps(event).encode(), key=b"k").get(timeout=30)
        wait_for(lambda: worker.log().count("sink flush of") >= 2, 90, "the worker to retry the failing sink")
    finally:
        producer.close(timeout=10)
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(timeout=60)
        finally:
            worker.kill()
    time.sleep(0.2)
    log = worker.log()
    assert "127.0.0.1" in log  # the failure is reported, with where it failed
    for secret in (PASSWORD, PII_KEY):
        assert secret not in log, f"{secret} found in the worker log"
