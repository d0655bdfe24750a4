"""The faust-streaming internals streams/batching.py relies on, checked by name, signature and behaviour.

streams/batching.py overrides `Consumer._drain_messages` and reads or writes the consumer's private offset and
ack state (`_read_offset`, `_add_gap`, `_unacked_messages`, `_acked`, ...). None of it is public API, so an
upgrade of faust-streaming (pinned >=0.15.3,<0.16) could change it without a deprecation. These tests fail
loudly when it does: first by name and signature, then by running a BulkApp on the real broker.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path

import faust
import faust.transport.base
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from pulse.kafka_tools import committed_offsets
from pulse.settings import Settings
from streams.batching import BulkApp, BulkConsumer, BulkTransport
from tests.support.services import wait_for

Consumer = faust_aiokafka.Consumer


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_pinned_version_is_the_one_checked() -> None:
    major, minor, *_ = version("faust-streaming").split(".")
    assert (int(major), int(minor)) == (0, 15), "streams/batching.py was written against faust-streaming 0.15"


@pytest.mark.parametrize(("name", "parameters", "is_coroutine"), [
    ("_drain_messages", ["self", "fetcher"], True),
    ("_wait_next_records", ["self", "timeout"], True),
    ("_add_gap", ["self", "tp", "offset_from", "offset_to"], True),
    ("_to_message", ["self", "tp", "record"], False),
    ("perform_seek", ["self"], True),
    ("commit", ["self", "topics", "start_new_transaction"], True),
    ("on_partitions_revoked", ["self", "revoked"], True),
    ("highwater", ["self", "tp"], False),
    ("wait_empty", ["self"], True),
])
def test_consumer_methods_batching_calls_or_overrides(name: str, parameters: list[str], is_coroutine: bool) -> None:
    method = getattr(Consumer, name)
    assert _parameters(method) == parameters, f"Consumer.{name}{inspect.signature(method)}"
    assert inspect.iscoroutinefunction(method) is is_coroutine


def test_app_and_transport_hooks() -> None:
    assert _parameters(faust.App._new_transport) == ["self"]
    assert issubclass(faust_aiokafka.Transport.Consumer, Consumer)
    # BulkApp builds it as BulkTransport(conf.broker_consumer, app); the aiokafka driver passes *args through.
    assert _parameters(faust.transport.base.Transport.__init__)[:3] == ["self", "url", "app"]
    assert BulkTransport.Consumer is BulkConsumer and issubclass(BulkApp, faust.App)
    from faust.types.tuples import ack_lock  # batching falls back to its own lock without it: it must be here

    assert hasattr(ack_lock, "acquire")


def test_consumer_state_batching_reads_and_writes(tmp_path: Path) -> None:
    """The attributes exist on a real consumer, with the types the code assumes (built, not started)."""
    async def build() -> Consumer:
        app = BulkApp("contract", broker="kafka://127.0.0.1:1", store="memory://", datadir=str(tmp_path),
                      web_enabled=False)
        return app.consumer

    consumer = asyncio.run(build())
    assert isinstance(consumer, BulkConsumer)
    tp = faust.types.TP("t", 0)
    assert consumer._read_offset[tp] is None  # defaultdict(None): "nothing read yet"
    assert consumer._committed_offset[tp] is None
    assert list(consumer._acked[tp]) == [] and set(consumer._acked_index[tp]) == set()
    assert isinstance(consumer._n_acked, int) and hasattr(consumer._unacked_messages, "add")
    assert hasattr(consumer._waiting_for_ack, "done") or consumer._waiting_for_ack is None
    assert isinstance(consumer._buffered_partitions, set)
    assert hasattr(consumer, "_commit_every") and hasattr(consumer, "flow_active")
    assert hasattr(consumer.suspend_flow, "wait") and hasattr(consumer, "diag")
    assert isinstance(consumer.consumer_stopped_errors, tuple)


@pytest.fixture
def one_partition_topic(kafka_settings: Settings) -> str:
    name = f"contract-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        admin.close()
    return name


def test_batches_arrive_whole_in_order_and_only_acked_offsets_are_committed(
        kafka_settings: Settings, one_partition_topic: str, tmp_path: Path) -> None:
    bootstrap, sent, acked_below = kafka_settings.kafka_bootstrap, 50, 40
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for number in range(sent):
        producer.send(one_partition_topic, key=b"k", value=f"v{number}".encode())
    producer.flush(timeout=30)
    producer.close()
    group, out = f"contract-{uuid.uuid4().hex[:8]}", tmp_path / "batches.jsonl"
    worker = subprocess.Popen([sys.executable, "-m", "tests.streams.faust_contract_app", bootstrap,
                               one_partition_topic, group, str(out), str(acked_below), str(tmp_path / "faust")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        received: dict[int, list[int]] = defaultdict(list)

        def all_received() -> bool:
            received.clear()
            for line in out.read_text().splitlines() if out.exists() else []:
                partition, offsets = json.loads(line)
                received[partition].extend(offsets)
            return len(received[0]) >= sent

        wait_for(all_received, timeout_s=180, what="the BulkApp to receive every message")
        assert received == {0: list(range(sent))}  # each once, in offset order, in per-partition lists
        tp = TopicPartition(one_partition_topic, 0)
        wait_for(lambda: committed_offsets(bootstrap, group).get(tp) == acked_below, timeout_s=60,
                 what="the acked offsets to be committed")
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=60)[0].decode(errors="replace")
    assert committed_offsets(bootstrap, group)[tp] == acked_below, output[-3000:]  # never past an unacked offset
