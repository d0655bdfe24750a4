"""The offset rules of streams/batching.py that decide what may be committed, on a real BulkConsumer (built, not
started: these rules are pure bookkeeping, no broker is involved). Each test pins a way an offset could be
committed past a message that no one stored (docs/scaling.md, "Loss under rebalances")."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from streams.batching import BulkApp, BulkConsumer

TOPIC = "payments"
P0 = TP(TOPIC, 0)


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[BulkConsumer]:
    loop = asyncio.new_event_loop()

    async def build() -> BulkConsumer:
        app = BulkApp("offsets", broker="kafka://127.0.0.1:1", store="memory://", datadir=str(tmp_path),
                      web_enabled=False)
        app.topics.add(app.topic(TOPIC))
        await app.topics._update_indices()  # the acking topics, computed on subscription when the app runs
        return app.consumer

    built = loop.run_until_complete(build())
    assert isinstance(built, BulkConsumer) and built.app.topics.acks_enabled_for(TOPIC)
    yield built
    loop.close()


def records(first: int, last: int, partition: int = 0) -> list[ConsumerRecord]:
    return [ConsumerRecord(TOPIC, partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())
            for offset in range(first, last + 1)]


def seated(consumer: BulkConsumer, tp: TP, committed: int | None) -> None:
    """As after ``perform_seek`` on assignment: the committed offset is the baseline."""
    consumer._baselines[tp] = committed
    if committed:
        consumer._committed_offset[tp] = committed
    consumer._read_offset[tp] = committed


def test_a_run_that_starts_after_the_committed_offset_is_not_committed(consumer: BulkConsumer) -> None:
    seated(consumer, P0, 100)
    consumer.ack_records(P0, records(101, 150))  # 100 itself was never processed
    assert consumer._new_offset(P0) is None  # stock faust-streaming returns 151 here: 100 is skipped
    consumer.ack_records(P0, records(100, 100))
    assert consumer._new_offset(P0) == 151


def test_no_commit_for_a_partition_without_a_baseline(consumer: BulkConsumer) -> None:
    # Revoked (stock code pops the committed offset) and not seeked again: a late ack must not commit.
    consumer.ack_records(P0, records(500, 520))
    assert consumer._committed_offset[P0] is None
    assert consumer._new_offset(P0) is None  # stock: 521, whatever lies before 500
    seated(consumer, P0, 480)
    assert consumer._new_offset(P0) is None  # 480-499 not processed
    consumer.ack_records(P0, records(480, 499))
    assert consumer._new_offset(P0) == 521


def test_a_committed_offset_of_zero_is_a_baseline(consumer: BulkConsumer) -> None:
    seated(consumer, P0, 0)
    consumer.ack_records(P0, records(5, 9))
    assert consumer._new_offset(P0) is None
    consumer.ack_records(P0, records(0, 4))
    assert consumer._new_offset(P0) == 10


def test_a_new_group_without_commits_commits_from_its_first_records(consumer: BulkConsumer) -> None:
    seated(consumer, P0, None)  # nothing committed in Kafka: the position came from auto_offset_reset
    consumer.ack_records(P0, records(40, 59))
    assert consumer._new_offset(P0) == 60
    consumer._committed_offset[P0] = 60  # as _commit_offsets records it
    consumer.ack_records(P0, records(62, 70))  # a hole after the first commit: wait for 60 and 61
    assert consumer._new_offset(P0) is None


def test_records_fetched_before_a_revocation_are_not_acked(consumer: BulkConsumer) -> None:
    seated(consumer, P0, 200)
    fetched_at = consumer.revocations
    consumer.revocations += 1  # as on_partitions_revoked does after draining; P0 assigned again
    seated(consumer, P0, 200)
    assert consumer.ack_records(P0, records(200, 260), fetched_at) == 0
    assert consumer._new_offset(P0) is None
    assert consumer.ack_records(P0, records(200, 210), consumer.revocations) == 11
    assert consumer._new_offset(P0) == 211


def test_gaps_start_at_the_next_offset_to_read(consumer: BulkConsumer) -> None:
    seated(consumer, P0, 300)
    accepted, gaps = consumer._accept(P0, records(303, 310))  # 300-302 do not exist (e.g. retention)
    assert [r.offset for r in accepted] == list(range(303, 311)) and gaps == [(300, 302)]
    consumer._read_offset[P0] = 311  # as _deliver leaves it: the next offset to read
    accepted, gaps = consumer._accept(P0, records(305, 315))  # a re-read after a seek back, then new ones
    assert [r.offset for r in accepted] == list(range(311, 316)) and gaps == []
    consumer._read_offset[P0] = 316
    accepted, gaps = consumer._accept(P0, records(318, 320))
    assert gaps == [(316, 317)]


def test_a_gap_at_the_committed_offset_lets_the_commit_move(consumer: BulkConsumer) -> None:
    seated(consumer, P0, 300)

    async def gap_then_ack() -> int | None:
        await consumer._add_gap(P0, 300, 302)
        consumer.ack_records(P0, records(303, 310))
        return consumer._new_offset(P0)

    assert asyncio.new_event_loop().run_until_complete(gap_then_ack()) == 311


def test_a_gap_does_not_cover_a_record_that_follows_it(consumer: BulkConsumer) -> None:
    seated(consumer, P0, 300)

    async def gap_only() -> int | None:
        await consumer._add_gap(P0, 300, 302)
        consumer.ack_records(P0, records(299, 299))  # below the committed offset: dropped
        return consumer._new_offset(P0)

    # 303 is a real record that is not acked: the gap alone is not committed past 303.
    assert asyncio.new_event_loop().run_until_complete(gap_only()) is None


def test_the_worker_consumer_asks_the_broker_to_hold_an_empty_fetch_for_200_ms_not_faust_s_1500(
        consumer: BulkConsumer) -> None:
    """aiokafka keeps one fetch in flight per broker: a fetch for partitions read to their end must not hold the
    refill of the others for Faust's 1.5 s (streams.batching.FETCH_MAX_WAIT_MS)."""
    from streams.batching import FETCH_MAX_WAIT_MS, BulkConsumerThread

    thread = consumer._new_consumer_thread()
    assert isinstance(thread, BulkConsumerThread)

    async def fetch_max_wait_ms() -> int:
        aiokafka_consumer = thread._create_worker_consumer(consumer.transport)  # built, not started
        try:
            return aiokafka_consumer._fetch_max_wait_ms  # what AIOKafkaConsumer.start() gives its Fetcher
        finally:
            await aiokafka_consumer.stop()

    assert asyncio.run(fetch_max_wait_ms()) == FETCH_MAX_WAIT_MS == 200
