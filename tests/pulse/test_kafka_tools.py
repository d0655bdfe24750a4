"""pulse.kafka_tools.end_offsets on a real broker: every partition of every topic asked for, or an error."""
from __future__ import annotations

import uuid

import pytest
from kafka import KafkaProducer, TopicPartition

from pulse import infra
from pulse.kafka_tools import TopicNotVisible, end_offsets
from pulse.settings import Settings


def test_end_offsets_of_topics_created_a_moment_ago_cover_every_partition(kafka_settings: Settings) -> None:
    settings = kafka_settings.model_copy(update={"topic_prefix": f"kt-{uuid.uuid4().hex[:8]}.", "topic_partitions": 3})
    created = infra.create_topics(settings)
    try:
        # Asked at once, before any metadata has settled: no topic may be left out.
        ends = end_offsets(settings.kafka_bootstrap, settings.topics.inputs)
        assert set(ends) == {TopicPartition(t, p) for t in settings.topics.inputs for p in range(3)}
        assert set(ends.values()) == {0}
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        topic = settings.topics.inputs[0]
        for _ in range(5):
            producer.send(topic, b"{}", partition=1)
        producer.flush(30)
        producer.close()
        assert end_offsets(settings.kafka_bootstrap, [topic])[TopicPartition(topic, 1)] == 5
    finally:
        infra.delete_run_topics(settings, "no-such-group")
    assert created == list(settings.topics.all)


def test_a_topic_that_does_not_exist_is_an_error_not_an_empty_answer(kafka_settings: Settings) -> None:
    with pytest.raises(TopicNotVisible, match="not in the Kafka cluster's metadata"):
        end_offsets(kafka_settings.kafka_bootstrap, [f"kt-missing-{uuid.uuid4().hex[:8]}"], timeout_s=1.0)
