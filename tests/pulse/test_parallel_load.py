"""The load generator of `python -m pulse.scale_run` (pulse/parallel_load.py): several producer processes, one
exact window truth. The truth the slices report is checked against the messages Kafka actually holds."""
from __future__ import annotations

import uuid
from array import array
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

from pulse.bench import WindowTruth
from pulse.kafka_tools import end_offsets
from pulse.parallel_load import SliceResult, default_producers, merge, parallel_produce
from pulse.settings import Settings
from pulse.simulate import event_time_start


def result(index: int, ids: list[int], rows: dict) -> SliceResult:
    return SliceResult(index, len(ids), 0.0, 1.0, rows, Counter(), array("Q", ids))


def test_slices_add_up_and_must_not_share_an_event() -> None:
    key = ("payments_1m", 1_767_521_220, "01")
    truth = merge([result(0, [1, 2], {key: Counter(tx=2, version=2)}),
                   result(1, [3], {key: Counter(tx=1, version=1), ("dossiers_1m", 60, "79"): Counter(version=1)})])
    assert truth.rows[key] == Counter(tx=3, version=3) and truth.rows[("dossiers_1m", 60, "79")]["version"] == 1
    assert truth.counted == 3
    with pytest.raises(RuntimeError, match="share 1 event ids"):
        merge([result(0, [1, 2], {}), result(1, [2], {})])


def test_one_producer_per_thousand_events_per_second() -> None:
    assert [default_producers(rate) for rate in (300, 1000, 1001, 3500)] == [1, 1, 2, 4]


def test_the_event_clock_starts_far_enough_back_to_stay_in_the_past_at_night() -> None:
    now = datetime(2026, 11, 29, 17, 30, tzinfo=timezone.utc)  # 00:30 in Vietnam: the quietest hours
    start = event_time_start(now, duration_s=600, behind_s=30)
    assert start == now - timedelta(seconds=30 + 600 * 50)  # up to 50 s of event time per second sent


def kafka_truth(bootstrap: str, topics: list[str]) -> WindowTruth:
    """The window truth of every message in `topics`, read back from Kafka."""
    stop = end_offsets(bootstrap, topics, {})
    truth = WindowTruth()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    consumer.assign(list(stop))
    consumer.seek_to_beginning()
    remaining = {tp for tp, end in stop.items() if end > 0}
    try:
        while remaining:
            for tp, records in consumer.poll(timeout_ms=2000).items():
                for record in records:
                    truth.add(record.value)
                if records[-1].offset + 1 >= stop[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()
    return truth


def test_parallel_producers_send_disjoint_slices_whose_truth_is_what_kafka_holds(
        kafka_settings: Settings, tmp_path: Path) -> None:
    streams = {stream: f"load-{stream}-{uuid.uuid4().hex[:6]}" for stream in ("payments", "dossiers", "identity")}
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 3, 1) for topic in streams.values()])
    finally:
        admin.close()
    settings = kafka_settings.model_copy(update={"state_dir": tmp_path})
    load = parallel_produce(settings, streams, {}, rate=600, duration_s=4, producers=3, seed=11)
    assert [share["sent"] for share in load.per_producer] == [800, 800, 800]  # 4 s at 200/s each, all sent
    assert load.sent == 2400 and load.seconds >= 3.9
    sent = kafka_truth(kafka_settings.kafka_bootstrap, list(streams.values()))
    assert sent.counted == load.sent == load.truth.counted  # no faults: every message is a counted first copy
    assert max(minute for _, minute, _ in sent.rows) < datetime.now(timezone.utc).timestamp()  # none in the future
    assert sent.differences({key: dict(value) for key, value in load.truth.rows.items()}) == []
    assert load.truth.differences({key: dict(value) for key, value in sent.rows.items()}) == []
