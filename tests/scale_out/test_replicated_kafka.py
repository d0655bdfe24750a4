"""Replicated Kafka (issue 15): three brokers, replication factor 3, min.insync.replicas 2, acks=all.

- A broker SIGKILLed in the middle of a faulty stream, restarted later: the windows equal the truth.
- With two of three brokers down, producers are refused (an error, not a silent loss), and every message
  acknowledged before stays readable once the brokers are back.
"""
from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError

from pulse import kafka_cluster
from pulse.settings import TOPIC_PAYMENTS, Settings
from simulators.generate import Emitted
from simulators.output import DeliveryFailed, make_producer, produce
from tests.scale_out.conftest import stored_count, wait_until_healthy
from tests.support.services import PulseEnv, WorkerProcess, wait_for
from tests.test_end_to_end import simulate
from tests.test_fault_tolerance import check_truth

EVENTS = 5000


def partition_leader(settings: Settings, topic: str, partition: int) -> int:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        described = admin.describe_topics([topic])[0]
    finally:
        admin.close()
    return next(p["leader_id"] for p in described["partitions"] if p["partition_index"] == partition)



def test_a_broker_sigkilled_mid_stream_and_restarted_later_leaves_the_windows_exact(
        cluster: Settings, tmp_path: Path) -> None:
    env = PulseEnv(state_dir=tmp_path / "state", bootstrap=cluster.kafka_bootstrap)
    env.start_from_now()
    events = tmp_path / "events.jsonl"
    simulate(env, events, EVENTS, seed=31)  # all fault kinds: duplicates, late, too late, malformed, ...
    env.extra["PULSE_BATCH_MAX_EVENTS"] = "300"
    victim = partition_leader(cluster, TOPIC_PAYMENTS, 0)  # a leader with writes in flight
    worker = WorkerProcess(env)
    with ThreadPoolExecutor(1) as pool:
        # About 25 s of sending (event time at 3x), so the broker dies and returns while events arrive.
        replay = pool.submit(env.pulse, "replay", "--from-file", str(events), "--speed", "3", timeout=240)
        try:
            wait_for(lambda: stored_count(env) > 800, 120, "the worker to store some events")
            stored_at_kill = stored_count(env)
            kafka_cluster.kill_node(cluster, victim)
            wait_for(lambda: stored_count(env) > stored_at_kill + 800, 120,
                     "the worker to keep storing with one broker dead")
            assert not replay.done(), "the replay ended before the broker came back: nothing was tested"
            kafka_cluster.node_service(cluster, victim).start()
            replay.result()  # raises if the producer lost or was refused anything
            env.wait_until_stored(timeout_s=240)
            assert worker.alive(), "the worker died with the broker"
        finally:
            assert worker.stop() == 0, worker.log()[-3000:]
    check_truth(env, events)


def _messages(count: int, tag: str) -> list[Emitted]:
    return [Emitted(stream="payments", key=f"{tag}-{i}".encode(), value=f"{tag}-{i}".encode(), event_time=0.0)
            for i in range(count)]


def _read_all(settings: Settings, topic: str, partitions: int, expected: int, timeout_s: float = 90) -> list[bytes]:
    """Every message of the topic, waiting until at least `expected` are readable."""
    deadline = time.monotonic() + timeout_s
    while True:
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                 consumer_timeout_ms=3000)
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            consumer.seek_to_beginning()
            values = [message.value for message in consumer]
        finally:
            consumer.close()
        if len(values) >= expected or time.monotonic() > deadline:
            return values
        time.sleep(1)


def test_with_two_of_three_brokers_down_writes_are_refused_and_acknowledged_ones_kept(cluster: Settings) -> None:
    topic, partitions = "pulse.scale-out.refusal", 3
    for node in kafka_cluster.existing_nodes(cluster):  # what each running broker was started with
        config = kafka_cluster.cluster_home(cluster) / f"broker-{node.node_id}" / "kafka" / "server.properties"
        lines = [line.split("=", 1) for line in config.read_text().splitlines() if "=" in line and line[0] != "#"]
        assert dict(lines)["min.insync.replicas"] == "2"  # the last value wins, as in Java
    admin = KafkaAdminClient(bootstrap_servers=cluster.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, kafka_cluster.REPLICATION_FACTOR)])
    finally:
        admin.close()
    # Short timeouts so that a refused write is reported in seconds, not the default two minutes.
    producer = make_producer(cluster.kafka_bootstrap, request_timeout_ms=4000, delivery_timeout_ms=12000,
                             max_block_ms=15000)
    try:
        acknowledged = _messages(300, "before")
        assert produce(acknowledged, producer, {"payments": topic}, rate=None)["payments"] == 300

        down = [node.node_id for node in kafka_cluster.existing_nodes(cluster)][1:]
        for node_id in down:
            kafka_cluster.kill_node(cluster, node_id)
        with pytest.raises(DeliveryFailed) as refused:
            produce(_messages(50, "during"), producer, {"payments": topic}, rate=None)
        # Either every send failed on its own (NotEnoughReplicas, or expired unanswered), or the final flush
        # gave up while they were still unanswered: in both cases nothing of it counts as sent.
        message = str(refused.value)
        assert message.startswith("Kafka did not acknowledge")
        assert any(name in message for name in ("NotEnoughReplicas", "KafkaTimeoutError", "RequestTimedOut"))
    finally:
        with contextlib.suppress(KafkaError):  # closing flushes what is left, which cannot be delivered now
            producer.close(timeout=5)

    # Services first, then start together (each start rewrites its node's configuration file).
    restarted = [kafka_cluster.node_service(cluster, node_id) for node_id in down]
    with ThreadPoolExecutor(len(restarted)) as pool:
        list(pool.map(lambda service: service.start(), restarted))
    wait_until_healthy(cluster)
    stored = _read_all(cluster, topic, partitions, expected=len(acknowledged))
    before = [value for value in stored if value.startswith(b"before-")]
    assert sorted(before) == sorted(m.value for m in acknowledged), "an acknowledged write was lost or doubled"
    # A refused write may still have reached the surviving leader's log (Kafka says "not acknowledged",
    # not "not written"): the producer was told, and nothing beyond what it sent appears.
    assert len(stored) - len(before) <= 50
