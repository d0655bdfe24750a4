"""Small Kafka helpers shared by replay, bench and tests: end offsets and a consumer group's progress."""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from pulse.errors import PulseError

# `security` in these helpers: kafka-python options from pulse.kafka_security.kafka_options(settings).


class TopicNotVisible(PulseError, RuntimeError):
    """A topic the caller needs is missing from the cluster's metadata."""


#: How long `end_offsets` waits for a topic to show up in the metadata (a topic created a moment ago).
TOPIC_VISIBLE_TIMEOUT_S = 30.0


def end_offsets(bootstrap: str, topics: Iterable[str], security: Mapping[str, Any] | None = None,
                timeout_s: float = TOPIC_VISIBLE_TIMEOUT_S) -> dict[TopicPartition, int]:
    """The log end offset of every partition of `topics`.

    Every topic is in the answer or the call raises: a broker asked right after the topic was created may not
    list it yet (seen on a three-broker cluster), and a topic silently left out had made a bench read nothing
    back from it and left a consumer group without a starting offset there."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **(security or {}))
    try:
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(_partitions_of(consumer, topic, timeout_s))]
        return consumer.end_offsets(partitions)
    finally:
        consumer.close()


def _partitions_of(consumer: KafkaConsumer, topic: str, timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while not (partitions := consumer.partitions_for_topic(topic)):  # asks the cluster again when not cached
        if time.monotonic() > deadline:
            raise TopicNotVisible(f"topic {topic!r} is not in the Kafka cluster's metadata after {timeout_s:.0f} s "
                                  f"(not created yet? `pulse infra up` creates the topics)")
        time.sleep(0.25)
    return partitions


def committed_offsets(bootstrap: str, group: str,
                      security: Mapping[str, Any] | None = None) -> dict[TopicPartition, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **(security or {}))
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        admin.close()


def wait_for_group(bootstrap: str, group: str, targets: dict[TopicPartition, int], timeout_s: float,
                   poll_s: float = 0.5, security: Mapping[str, Any] | None = None) -> float:
    """Block until the group has committed at least `targets` on every partition; returns seconds waited."""
    started = time.monotonic()
    pending = {tp: offset for tp, offset in targets.items() if offset > 0}
    while pending:
        committed = committed_offsets(bootstrap, group, security)
        pending = {tp: offset for tp, offset in pending.items() if committed.get(tp, -1) < offset}
        if not pending:
            break
        if time.monotonic() - started > timeout_s:
            behind = ", ".join(f"{tp.topic}[{tp.partition}] {committed.get(tp, -1)}/{offset}"
                               for tp, offset in sorted(pending.items()))
            raise TimeoutError(f"consumer group {group!r} did not catch up within {timeout_s:.0f} s "
                               f"(is `pulse worker` running?); behind: {behind}")
        time.sleep(poll_s)
    return time.monotonic() - started
