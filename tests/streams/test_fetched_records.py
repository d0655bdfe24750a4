"""The worker's consumer gets aiokafka's records as FetchedRecord structs (streams.batching): the same fields and
values as aiokafka's ConsumerRecord, parsed by aiokafka from real record batches, but not tracked by the GC."""
from __future__ import annotations

import dataclasses
import gc

from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord, TopicPartition

from streams.batching import FetchedRecord, _fetched_record, _stock_consumer_record

TP = TopicPartition("pulse.payments.vietqr", 3)
MESSAGES = [
    (b"key-0", b'{"type": "payment"}', []),
    (None, b"no key", [("trace", b"abc"), ("origin", b"")]),
    (b"key-2", None, []),  # a tombstone
    (b"", b"", []),
]


def _batch() -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for n, (key, value, headers) in enumerate(MESSAGES):
        builder.append(1_000 + n, timestamp=1_767_225_600_000 + n * 1_000, key=key, value=value, headers=headers)
    return bytes(builder.build())


def _records(build, deserializer=None) -> list:
    partition_records = PartitionRecords(TP, MemoryRecords(_batch()), None, 1_000, deserializer, None, False, 0)
    original = PartitionRecords._consumer_record
    PartitionRecords._consumer_record = build
    try:
        return list(partition_records)
    finally:
        PartitionRecords._consumer_record = original


def test_fetched_records_hold_what_consumer_records_hold_and_are_not_tracked_by_the_gc() -> None:
    stock = _records(_stock_consumer_record)
    fetched = _records(_fetched_record)
    assert all(type(record) is ConsumerRecord for record in stock)
    assert all(type(record) is FetchedRecord and not gc.is_tracked(record) for record in fetched)
    fields = [field.name for field in dataclasses.fields(ConsumerRecord)]
    assert fields == list(FetchedRecord.__struct_fields__)
    assert [[getattr(r, name) for name in fields] for r in fetched] == [[getattr(r, name) for name in fields]
                                                                        for r in stock]
    assert [(r.offset, r.key, r.value, r.headers, r.serialized_key_size, r.serialized_value_size)
            for r in fetched] == [(1_000, b"key-0", b'{"type": "payment"}', (), 5, 19),
                                  (1_001, None, b"no key", (("trace", b"abc"), ("origin", b"")), -1, 6),
                                  (1_002, b"key-2", None, (), 5, -1),
                                  (1_003, b"", b"", (), 0, 0)]
    assert fetched[1].timestamp == 1_767_225_601_000  # Kafka's milliseconds


def test_a_consumer_with_a_deserializer_keeps_aiokafkas_records() -> None:
    records = _records(_fetched_record, deserializer=lambda key: key and key.upper())
    assert all(type(record) is ConsumerRecord for record in records)
    assert records[0].key == b"KEY-0"
