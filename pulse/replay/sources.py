"""Replay sources behind the `Source` protocol: a JSONL file (`FileSource`) and a Kafka range (`TopicSource`),
and `read_partitions`, the timestamp-ordered merge of partitions that `pulse archive` uses too."""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pulse.errors import PulseError, PulseUsageError
from pulse.parsing import OffsetRange
from pulse.replay.records import (
    STREAM_OF_TOPIC,
    Cursor,
    Record,
    digest,
    pseudo_topic,
    route,
    stream_of_value,
    tp_key,
)
from pulse.settings import STREAM_TOPICS

if TYPE_CHECKING:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.consumer.fetcher import ConsumerRecord

STALL_TIMEOUT_S = 60.0  # no message from a partition that should have more for this long: give up
_GZIP_MAGIC = b"\x1f\x8b"


class SourceError(PulseError, ValueError):
    """The Kafka range cannot be read as asked: a topic or partition that does not exist, offsets out of range."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FileSource:
    """A JSONL file, plain or gzip (recognised by its magic bytes); the cursor is line number and byte."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.name = path.name
        self.total_units = float(self.path.stat().st_size)
        self.units_done = 0.0
        self.sha256 = file_sha256(self.path)
        self.digest = self.sha256[:12]
        self.identity = {"kind": "file", "path": str(self.path), "sha256": self.sha256}
        self.description = self.name
        self._final: Cursor | None = None
        with self.path.open("rb") as handle:
            self.gzipped = handle.read(2) == _GZIP_MAGIC

    def initial_cursor(self) -> Cursor:
        return {"line": 0, "byte": 0}

    @contextlib.contextmanager
    def _open(self, byte: int) -> Iterator[tuple[Any, Any]]:
        with self.path.open("rb") as raw:
            handle = gzip.GzipFile(fileobj=raw, mode="rb") if self.gzipped else raw
            try:
                if byte:
                    handle.seek(byte)
                yield raw, handle
            finally:
                if handle is not raw:
                    handle.close()

    def records(self, start: Cursor) -> Iterator[Record]:
        return self.window(start, None)

    def window(self, start: Cursor, end: Cursor | None) -> Iterator[Record]:
        line_no, byte = start["line"], start["byte"]
        stop = None if end is None else end["line"]
        with self._open(byte) as (raw, handle):
            for raw_line in handle:
                if stop is not None and line_no >= stop:
                    return
                line_no += 1
                byte += len(raw_line)
                self.units_done = float(raw.tell())
                line = raw_line.rstrip(b"\r\n")
                if line:
                    stream, key = route(line)
                    yield Record(stream, key, line, self.name, 0, line_no - 1, 0.0, byte)
        if end is None:
            self.units_done = self.total_units
            self._final = {"line": line_no, "byte": byte}

    def advance(self, cursor: Cursor, records: list[Record]) -> Cursor:
        if not records:
            return dict(cursor)
        last = records[-1]
        return {"line": last.offset + 1, "byte": last.end}

    def final_cursor(self) -> Cursor:
        assert self._final is not None, "final_cursor before the file was read to its end"
        return dict(self._final)

    def pseudo_topics(self) -> dict[tuple[str, str], str]:
        return {(self.name, stream): pseudo_topic(self.name, self.digest, stream) for stream in STREAM_TOPICS}


class TopicSource:
    """Messages of Kafka partitions in [start, end) offset ranges, optionally limited to a time range.

    With `since`/`until` the ranges come from `offsets_for_times` (first offset at or after each moment)
    and, since producer timestamps need not be monotonic, a message is also skipped unless
    since <= timestamp < until. The cursor is the next offset to read per partition.
    """

    def __init__(self, bootstrap: str, *, topics: Iterable[str] = (), since: datetime | None = None,
                 until: datetime | None = None, offsets: list[OffsetRange] | None = None,
                 security: Mapping[str, Any] | None = None) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.bootstrap = bootstrap
        self.security = dict(security or {})
        self.since_ms = None if since is None else int(since.timestamp() * 1000)
        self.until_ms = None if until is None else int(until.timestamp() * 1000)
        if offsets:
            self.identity = {"kind": "offsets", "ranges": [str(item) for item in offsets]}
            self.description = ",".join(str(item) for item in offsets)
        else:
            if self.since_ms is None or self.until_ms is None:
                raise PulseUsageError("--topic needs --since and --until")
            if self.until_ms <= self.since_ms:
                raise PulseUsageError("--until must be later than --since")
            self.identity = {"kind": "topics", "topics": sorted(set(topics)), "since_ms": self.since_ms,
                             "until_ms": self.until_ms}
            self.description = "+".join(sorted(set(topics)))
        self.digest = digest(self.identity)[:12]
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                 **self.security)
        try:
            self.ranges: dict[Any, tuple[int, int]] = {}
            if offsets:
                wanted = [TopicPartition(item.topic, item.partition) for item in offsets]
                self._check_partitions(consumer, wanted)
                first, last = consumer.beginning_offsets(wanted), consumer.end_offsets(wanted)
                for item, tp in zip(offsets, wanted):
                    end = last[tp] if item.end is None else item.end
                    if item.start < first[tp] or end > last[tp]:
                        raise SourceError(f"{item}: {tp.topic}[{tp.partition}] holds offsets {first[tp]}.."
                                         f"{last[tp] - 1} (older ones are past retention)")
                    low, high = self.ranges.get(tp, (item.start, end))
                    self.ranges[tp] = (min(low, item.start), max(high, end))
            else:
                wanted = []
                for topic in sorted(set(topics)):
                    partitions = consumer.partitions_for_topic(topic)
                    if not partitions:
                        raise SourceError(f"topic {topic!r} does not exist on {bootstrap}")
                    wanted += [TopicPartition(topic, p) for p in sorted(partitions)]
                last = consumer.end_offsets(wanted)
                starts = consumer.offsets_for_times({tp: self.since_ms for tp in wanted})
                ends = consumer.offsets_for_times({tp: self.until_ms for tp in wanted})
                for tp in wanted:
                    start = starts[tp].offset if starts.get(tp) else last[tp]
                    end = ends[tp].offset if ends.get(tp) else last[tp]
                    self.ranges[tp] = (start, max(start, end))
        finally:
            consumer.close()
        self.total_units = float(sum(end - start for start, end in self.ranges.values()))
        self.units_done = 0.0

    @staticmethod
    def _check_partitions(consumer: KafkaConsumer, wanted: Iterable[TopicPartition]) -> None:
        for tp in wanted:
            partitions = consumer.partitions_for_topic(tp.topic)
            if not partitions:
                raise SourceError(f"topic {tp.topic!r} does not exist")
            if tp.partition not in partitions:
                raise SourceError(f"topic {tp.topic!r} has no partition {tp.partition}")

    def initial_cursor(self) -> Cursor:
        return {tp_key(tp.topic, tp.partition): start for tp, (start, _) in self.ranges.items()}

    def _limited(self, start: Cursor, end: Cursor | None) -> dict:
        limited = {}
        for tp, (low, high) in self.ranges.items():
            key = tp_key(tp.topic, tp.partition)
            begin = max(low, start.get(key, low))
            stop = high if end is None else min(high, end.get(key, high))
            limited[tp] = (begin, max(begin, stop))
        return limited

    def records(self, start: Cursor) -> Iterator[Record]:
        limited = self._limited(start, None)
        self.units_done = float(sum(begin - low for (low, _), (begin, _) in zip(self.ranges.values(),
                                                                                limited.values())))
        for message in read_partitions(self.bootstrap, limited, security=self.security):
            self.units_done += 1
            record = self._record(message)
            if record is not None:
                yield record
        self.units_done = self.total_units

    def window(self, start: Cursor, end: Cursor) -> Iterator[Record]:
        for message in read_partitions(self.bootstrap, self._limited(start, end), security=self.security):
            record = self._record(message)
            if record is not None:
                yield record

    def _record(self, message: ConsumerRecord) -> Record | None:
        if self.since_ms is not None and not self.since_ms <= message.timestamp < self.until_ms:
            return None
        stream = STREAM_OF_TOPIC.get(message.topic) or stream_of_value(message.value)
        return Record(stream, message.key, message.value, message.topic, message.partition, message.offset,
                      message.timestamp / 1000)

    def advance(self, cursor: Cursor, records: list[Record]) -> Cursor:
        moved = dict(cursor)
        for record in records:
            key = tp_key(record.source, record.partition)
            moved[key] = max(moved.get(key, 0), record.offset + 1)
        return moved

    def final_cursor(self) -> Cursor:
        return {tp_key(tp.topic, tp.partition): end for tp, (_, end) in self.ranges.items()}

    def pseudo_topics(self) -> dict[tuple[str, str], str]:
        topics = {tp.topic for tp in self.ranges}
        return {(topic, stream): pseudo_topic(topic, self.digest, stream)
                for topic in topics for stream in STREAM_TOPICS}



def read_partitions(bootstrap: str, ranges: dict, *, stall_timeout_s: float = STALL_TIMEOUT_S,
                    max_buffered: int = 20_000, security: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """The messages of `{TopicPartition: (start, end)}`, merged across partitions by (timestamp, topic,
    partition, offset), so that event time moves forward as when they were produced."""
    from kafka import KafkaConsumer

    live = {tp: span for tp, span in ranges.items() if span[0] < span[1]}
    if not live:
        return
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             max_poll_records=5000, auto_offset_reset="earliest", **(security or {}))
    try:
        consumer.assign(list(live))
        for tp, (start, _) in live.items():
            consumer.seek(tp, start)
        buffers: dict[Any, deque] = {tp: deque() for tp in live}
        fetched: set = set()
        paused: set = set()
        last_progress = time.monotonic()
        while live:
            waiting = [tp for tp in live if not buffers[tp] and tp not in fetched]
            if waiting:
                for tp in list(paused):
                    if len(buffers[tp]) < max_buffered // 4:
                        consumer.resume(tp)
                        paused.discard(tp)
                polled = consumer.poll(timeout_ms=500)
                for tp, messages in polled.items():
                    end = live[tp][1] if tp in live else -1
                    buffers[tp].extend(m for m in messages if m.offset < end)
                    if len(buffers[tp]) > max_buffered and tp not in paused:
                        consumer.pause(tp)
                        paused.add(tp)
                for tp in waiting:
                    if consumer.position(tp) >= live[tp][1]:
                        fetched.add(tp)
                if any(buffers[tp] for tp in waiting) or any(tp in fetched for tp in waiting):
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > stall_timeout_s:
                    raise TimeoutError(f"no messages from {', '.join(f'{tp.topic}[{tp.partition}]' for tp in waiting)}"
                                       f" for {stall_timeout_s:.0f} s although the range is not exhausted")
                continue
            for tp in [tp for tp in live if not buffers[tp]]:
                del live[tp]
            if not live:
                break
            tp = min(live, key=lambda tp: (buffers[tp][0].timestamp, tp.topic, tp.partition))
            message = buffers[tp].popleft()
            if message.offset + 1 >= live[tp][1]:
                fetched.add(tp)
            yield message
    finally:
        consumer.close()

