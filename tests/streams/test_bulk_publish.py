"""Window rows and dead letters are published in record batches (streams.app.BulkPublisher) on the real broker:
one Kafka message per row, each on the partition aiokafka's own `send` picks for its key, in order."""
from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from pulse.settings import Settings
from streams.app import BulkPublisher

PARTITIONS = 4


def _topics(bootstrap: str, count: int) -> list[str]:
    names = [f"r3f-publish-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        admin.close()
    return names


def _read(bootstrap: str, topic: str, expected: int) -> list[tuple[int, bytes | None, bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000,
                             auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        found = []
        for record in consumer:
            found.append((record.partition, record.key, record.value))
            if len(found) >= expected:
                break
        return found
    finally:
        consumer.close()


def test_bulk_publishing_puts_every_message_on_its_keys_partition_once_and_in_order(
        kafka_settings: Settings) -> None:
    bootstrap = kafka_settings.kafka_bootstrap
    bulk_topic, single_topic = _topics(bootstrap, 2)
    keys = [f"payments_1m:2026-01-05T00:{minute:02d}:00+00:00:{code:02d}".encode()
            for minute in range(20) for code in range(1, 35)]
    messages = [(key, b'{"version": %d, "pad": "%s"}' % (n, b"x" * 150)) for n, key in enumerate(keys)]
    messages += [(keys[0], b'{"version": 100000}'), (keys[1], b"y" * 40_000)]  # a later row; one beyond a batch
    messages += [(None, b"a dead letter without a key")]

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            async def started() -> AIOKafkaProducer:
                return producer

            publisher = BulkPublisher(started)
            deliveries = await publisher.send(bulk_topic, messages)
            assert len(deliveries) > PARTITIONS  # several batches: they fill up at the producer's batch size
            await asyncio.gather(*deliveries)
            publisher.publish(bulk_topic, [(b"background", b"sent after the others")])
            await publisher.wait()
            await producer.flush()
            for key, value in messages[:-1]:  # the partition a message-by-message send picks for each key
                await producer.send(single_topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(publish())
    published = _read(bootstrap, bulk_topic, len(messages) + 1)
    assert len(published) == len(messages) + 1
    assert sorted((k or b"", v) for _, k, v in published) == sorted(
        [(k or b"", v) for k, v in messages] + [(b"background", b"sent after the others")])
    single = {key: partition for partition, key, _ in _read(bootstrap, single_topic, len(messages) - 1)}
    assert {key: partition for partition, key, _ in published if key is not None and key != b"background"} == single
    assert len(set(single.values())) == PARTITIONS
    first_key = [value for _, key, value in published if key == keys[0]]
    assert first_key == [messages[0][1], b'{"version": 100000}']  # one partition, in the order published
