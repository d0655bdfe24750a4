"""streams.batching.seek_to_committed_exactly on a real broker: after records were fetched (and dropped, as the
fetch loop drops what arrives while the flow is stopped for a rebalance), every partition goes back to its
committed offset, 0 included, and one without a commit to the earliest offset. aiokafka's own
seek_to_committed leaves partitions committed at 0 where the fetcher stands, which lost the first record of
fresh topics with two workers (docs/scaling.md, "Loss under rebalances")."""
from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from kafka.admin import KafkaAdminClient, NewTopic

from pulse.settings import Settings
from streams.batching import seek_to_committed_exactly

RECORDS_PER_PARTITION = 3


async def _fetched_everything(bootstrap: str, topic: str, group: str) -> dict[TopicPartition, int]:
    """Commit 0 for partition 0, nothing for partition 1, read every record, then seek back both ways."""
    committed_at_zero, never_committed = TopicPartition(topic, 0), TopicPartition(topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for tp in (committed_at_zero, never_committed):
            for n in range(RECORDS_PER_PARTITION):
                await producer.send_and_wait(topic, f"record {n}".encode(), partition=tp.partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([committed_at_zero, never_committed])
        await consumer.commit({committed_at_zero: OffsetAndMetadata(0, "")})
        fetched = 0
        while fetched < 2 * RECORDS_PER_PARTITION:
            batches = await consumer.getmany(timeout_ms=1000)
            fetched += sum(len(records) for records in batches.values())
        assert {await consumer.position(tp) for tp in (committed_at_zero, never_committed)} == {RECORDS_PER_PARTITION}
        # The premise: aiokafka's seek leaves both partitions past records nobody processed.
        await consumer.seek_to_committed()
        assert await consumer.position(committed_at_zero) == RECORDS_PER_PARTITION
        committed = await seek_to_committed_exactly(consumer, "earliest")
        assert committed == {committed_at_zero: 0, never_committed: None}
        return {tp: await consumer.position(tp) for tp in (committed_at_zero, never_committed)}
    finally:
        await consumer.stop()


def test_partitions_go_back_to_a_committed_zero_and_to_the_start_without_a_commit(kafka_settings: Settings) -> None:
    topic = f"seek-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
        positions = asyncio.run(_fetched_everything(kafka_settings.kafka_bootstrap, topic, f"g-{topic}"))
        assert positions == {TopicPartition(topic, 0): 0, TopicPartition(topic, 1): 0}
    finally:
        admin.delete_topics([topic])
        admin.close()
