"""`pulse replay`: feed recorded events back, from a file or a range of a Kafka topic, into the input
topics (the default) or straight into ClickHouse (`--direct`).

Sources
    a JSONL file (`.gz` too), one message value per line; or Kafka messages whose timestamps fall in
    [since, until) (offsets per partition from the consumer's `offsets_for_times`); or explicit offset
    ranges `topic:partition:start-end` (end exclusive). Topic messages are read merged across partitions
    in timestamp order, so event time moves forward as it did when they were produced.

Targets
    Kafka: each message goes to its stream's input topic with its key (a file line's key comes from its
    content, as the simulators set it; a topic message keeps its own). The worker then applies its usual
    rules, including lateness against the partitions' current watermarks.

    Direct: the same `Pipeline` and `ClickHouseSink` as the worker, without Kafka. Messages carry a
    pseudo-topic `replay:<source>@<digest>/<stream>` (source = the file name or the source topic; digest =
    the first 12 hex digits of the file's SHA-256, or of the topic range), partition = 0 for a file or the
    source partition, offset = the 0-based line number or the source offset. So `stream_offsets` gets one
    row per pseudo-partition (last line/offset stored and its event-time watermark), dead letters say
    which line or offset they came from, the pseudo-partitions have watermarks of their own (old data is
    not `too_late` against today's live partitions) and the worker's progress on the real input
    partitions is never touched. Replaying the same source directly again skips what is already stored.

Checkpoints
    Every run that writes keeps `<state dir>/replay-checkpoints/<hash>.json` (hash of source identity and
    target); `--resume` continues from it. For the Kafka target each chunk is recorded as pending (its
    source range and the target partitions' end offsets before it) before it is sent and as done after
    the broker acknowledged it; resuming after a kill reads the target partitions from those offsets and
    sends only the messages of the pending chunk that are not there, so nothing is sent twice.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import orjson

from pulse.errors import PulseUsageError
from pulse.kafka_security import kafka_options
from pulse.kafka_tools import end_offsets, wait_for_group
from pulse.parsing import OffsetRange, parse_offsets, parse_speed, parse_time
from pulse.progress import Tracker, interactive
from pulse.settings import STREAM_TOPICS, Settings
from schemas.redact import redact_url as _redact_url
from simulators.generate import STREAM_OF_TYPE, Emitted

STREAM_OF_TOPIC = {topic: stream for stream, topic in STREAM_TOPICS.items()}
CHECKPOINT_DIR = "replay-checkpoints"
CHECKPOINT_FORMAT = 1
KAFKA_CHUNK = 10_000  # messages per acknowledged, checkpointed chunk at --speed max
PACED_CHUNK_S = 0.25  # wall seconds per chunk when paced by event time
STALL_TIMEOUT_S = 60.0  # no message from a partition that should have more for this long: give up

_TYPE = re.compile(rb'"type"\s*:\s*"(payment|dossier|id_activation)"')
_KEY = {"dossier": re.compile(rb'"dossier_id"\s*:\s*"([^"]{1,64})"')}
_EVENT_ID = re.compile(rb'"event_id"\s*:\s*"([^"]{1,64})"')
_EVENT_TIME = re.compile(rb'"event_time"\s*:\s*"([^"]{10,40})"')
_GZIP_MAGIC = b"\x1f\x8b"


# --- parsing of options ----------------------------------------------------------------------------

def event_time_of(value: bytes | None) -> float | None:
    """Event time (Unix seconds) of a message value, without decoding all of it; None if it has none."""
    if not value:
        return None
    match = _EVENT_TIME.search(value)
    if not match:
        return None
    try:
        moment = datetime.fromisoformat(match.group(1).decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _route(line: bytes) -> tuple[str, bytes | None]:
    """Stream and key of a line, also for a damaged one (the worker dead-letters it, with its origin)."""
    try:
        event = orjson.loads(line)
        kind = event["type"]
        return STREAM_OF_TYPE[kind], str(event["dossier_id" if kind == "dossier" else "event_id"]).encode()
    except (orjson.JSONDecodeError, KeyError, TypeError):
        match = _TYPE.search(line)
        kind = match.group(1).decode() if match else "payment"
        key = (_KEY.get(kind) or _EVENT_ID).search(line)
        return STREAM_OF_TYPE[kind], key.group(1) if key else None


def _stream_of_value(value: bytes | None) -> str:
    return _route(value)[0] if value else "payments"


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _tp_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def _tp_of(key: str):  # noqa: ANN202 - kafka's TopicPartition
    from kafka import TopicPartition

    topic, partition = key.rsplit(":", 1)
    return TopicPartition(topic, int(partition))


# --- sources ---------------------------------------------------------------------------------------

@dataclass(slots=True)
class Record:
    stream: str
    key: bytes | None
    value: bytes | None
    source: str  # file name or source topic
    partition: int  # 0 for a file
    offset: int  # 0-based line number, or the source offset
    timestamp: float  # Kafka timestamp (Unix seconds); 0 for a file line
    end: int = 0  # for a file line: uncompressed byte offset just after it


Cursor = dict[str, int]


class Source(Protocol):
    description: str
    identity: dict
    digest: str
    total_units: float | None
    units_done: float

    def initial_cursor(self) -> Cursor: ...

    def records(self, start: Cursor) -> Iterator[Record]: ...

    def window(self, start: Cursor, end: Cursor) -> Iterator[Record]: ...

    def advance(self, cursor: Cursor, records: list[Record]) -> Cursor: ...

    def final_cursor(self) -> Cursor: ...


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
                    stream, key = _route(line)
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
        return {(self.name, stream): _pseudo_topic(self.name, self.digest, stream) for stream in STREAM_TOPICS}


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
        self.digest = _digest(self.identity)[:12]
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
                        raise ValueError(f"{item}: {tp.topic}[{tp.partition}] holds offsets {first[tp]}.."
                                         f"{last[tp] - 1} (older ones are past retention)")
                    low, high = self.ranges.get(tp, (item.start, end))
                    self.ranges[tp] = (min(low, item.start), max(high, end))
            else:
                wanted = []
                for topic in sorted(set(topics)):
                    partitions = consumer.partitions_for_topic(topic)
                    if not partitions:
                        raise ValueError(f"topic {topic!r} does not exist on {bootstrap}")
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
    def _check_partitions(consumer, wanted) -> None:  # noqa: ANN001
        for tp in wanted:
            partitions = consumer.partitions_for_topic(tp.topic)
            if not partitions:
                raise ValueError(f"topic {tp.topic!r} does not exist")
            if tp.partition not in partitions:
                raise ValueError(f"topic {tp.topic!r} has no partition {tp.partition}")

    def initial_cursor(self) -> Cursor:
        return {_tp_key(tp.topic, tp.partition): start for tp, (start, _) in self.ranges.items()}

    def _limited(self, start: Cursor, end: Cursor | None) -> dict:
        limited = {}
        for tp, (low, high) in self.ranges.items():
            key = _tp_key(tp.topic, tp.partition)
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

    def _record(self, message) -> Record | None:  # noqa: ANN001 - kafka's ConsumerRecord
        if self.since_ms is not None and not self.since_ms <= message.timestamp < self.until_ms:
            return None
        stream = STREAM_OF_TOPIC.get(message.topic) or _stream_of_value(message.value)
        return Record(stream, message.key, message.value, message.topic, message.partition, message.offset,
                      message.timestamp / 1000)

    def advance(self, cursor: Cursor, records: list[Record]) -> Cursor:
        moved = dict(cursor)
        for record in records:
            key = _tp_key(record.source, record.partition)
            moved[key] = max(moved.get(key, 0), record.offset + 1)
        return moved

    def final_cursor(self) -> Cursor:
        return {_tp_key(tp.topic, tp.partition): end for tp, (_, end) in self.ranges.items()}

    def pseudo_topics(self) -> dict[tuple[str, str], str]:
        topics = {tp.topic for tp in self.ranges}
        return {(topic, stream): _pseudo_topic(topic, self.digest, stream)
                for topic in topics for stream in STREAM_TOPICS}


def _pseudo_topic(source: str, digest: str, stream: str) -> str:
    return f"replay:{source}@{digest}/{stream}"


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


# --- checkpoints -----------------------------------------------------------------------------------

def redact_url(url: str) -> str:
    """A URL as checkpoints and reports keep it: without its credentials (the shared redactor, `mask=None`)."""
    return _redact_url(url, mask=None)


class Checkpoint:
    """`<state>/replay-checkpoints/<hash>.json`, written atomically (temporary file, fsync, rename)."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = path
        self.data = data

    @classmethod
    def locate(cls, state_dir: Path, source_identity: dict, target: str) -> Path:
        name = _digest({"source": source_identity, "target": target})[:20]
        return state_dir / CHECKPOINT_DIR / f"{name}.json"

    @classmethod
    def open(cls, state_dir: Path, source: Source, target: str, *, resume: bool) -> tuple[Checkpoint, bool]:
        """The stored checkpoint when resuming and there is one (True), else a fresh one (False)."""
        path = cls.locate(state_dir, source.identity, target)
        if resume and path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") == CHECKPOINT_FORMAT:
                return cls(path, data), True
        fresh = {"format": CHECKPOINT_FORMAT, "source": source.identity, "target": target,
                 "source_start": source.initial_cursor(), "cursor": source.initial_cursor(), "sent": {},
                 "pending": None, "stored": [], "complete": False, "runs": 0, "updated_at": None}
        return cls(path, fresh), False

    def save(self) -> None:
        self.data["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(f".tmp{os.getpid()}")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(self.data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def add_sent(self, counts: Counter) -> None:
        sent = Counter(self.data.get("sent") or {})
        sent.update(counts)
        self.data["sent"] = dict(sent)


# --- chunking and pacing ---------------------------------------------------------------------------

class EventTimePacer:
    """Holds the replay to `factor` event-time seconds per wall second, from the first event on."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._origin: tuple[float, float] | None = None

    def delay(self, record: Record) -> float:
        moment = event_time_of(record.value)
        if moment is None:
            return 0.0
        if self._origin is None:
            self._origin = (moment, time.monotonic())
            return 0.0
        return self._origin[1] + (moment - self._origin[0]) / self.factor - time.monotonic()


@dataclass
class Chunk:
    records: list[Record]
    start: Cursor
    end: Cursor
    ended: str | None  # None: more follows; "done", "limit" or "stopped"


def chunks(source: Source, start: Cursor, *, size: int, max_wall_s: float, pacer: EventTimePacer | None,
           limit: int | None, stop: threading.Event) -> Iterator[Chunk]:
    """The source from `start` in chunks, paced; a chunk ends before a pause so nothing waits unsent."""
    iterator = source.records(start)
    chunk_start, pending, taken = dict(start), None, 0
    while True:
        records: list[Record] = []
        opened = time.monotonic()
        ended = None
        while True:
            if stop.is_set():
                ended = "stopped"
                break
            if limit is not None and taken >= limit:
                ended = "limit"
                break
            if pending is None:
                pending = next(iterator, None)
                if pending is None:
                    ended = "done"
                    break
            delay = pacer.delay(pending) if pacer else 0.0
            if delay > 0.002:
                if records:
                    break
                stop.wait(min(delay, 0.2))
                continue
            records.append(pending)
            pending, taken = None, taken + 1
            if len(records) >= size or time.monotonic() - opened >= max_wall_s:
                break
        end = source.final_cursor() if ended == "done" else source.advance(chunk_start, records)
        yield Chunk(records, chunk_start, end, ended)
        if ended:
            return
        chunk_start = end


# --- targets ---------------------------------------------------------------------------------------

def _day_and_province(value: bytes | None) -> tuple[str, str]:
    from schemas.provinces import code_map

    try:
        event = orjson.loads(value or b"")
        code = str(event.get("province_code"))
        day = datetime.fromisoformat(event["event_time"]).astimezone(timezone.utc).date().isoformat()
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return "?", "?"
    return day, code_map().get(code, f"?{code}")


def _nested(counter: Counter) -> dict:
    tree: dict = defaultdict(lambda: defaultdict(dict))
    for (stream, day, province), count in sorted(counter.items()):
        tree[stream][day][province] = count
    return {stream: dict(days) for stream, days in tree.items()}


class KafkaTarget:
    """Into the input topics, chunk by acknowledged chunk, with pending chunks recorded for recovery."""

    name = "kafka"

    def __init__(self, settings: Settings, source: Source) -> None:
        from simulators.output import make_producer

        self.bootstrap = settings.kafka_bootstrap
        self.security = kafka_options(settings)
        self.topics = settings.topics.streams  # stream -> input topic (PULSE_TOPIC_PREFIX)
        self.identity = f"kafka://{self.bootstrap}"
        self.source = source
        self.producer = make_producer(self.bootstrap, **self.security)
        self.marks: dict[str, int] = {}
        self.sent: Counter = Counter()
        self.recovered = 0
        self.resent = 0

    def start(self, checkpoint: Checkpoint) -> None:
        if checkpoint.data.get("pending"):
            self._recover(checkpoint)
        self.marks = {_tp_key(tp.topic, tp.partition): offset
                      for tp, offset in end_offsets(self.bootstrap, self.topics.values(), self.security).items()}

    def _send(self, records: list[Record]) -> Counter:
        futures = [(record, self.producer.send(self.topics[record.stream], key=record.key, value=record.value))
                   for record in records]
        self.producer.flush(timeout=120)
        counts: Counter = Counter()
        for record, future in futures:
            metadata = future.get(timeout=0)  # raises the send error, if any
            key = _tp_key(metadata.topic, metadata.partition)
            self.marks[key] = max(self.marks.get(key, 0), metadata.offset + 1)
            counts[record.stream] += 1
        return counts

    def deliver(self, chunk: Chunk, checkpoint: Checkpoint) -> None:
        if chunk.records:
            checkpoint.data["pending"] = {"from": chunk.start, "to": chunk.end, "marks": dict(self.marks)}
            checkpoint.save()
            counts = self._send(chunk.records)
            self.sent.update(counts)
            checkpoint.add_sent(counts)
        checkpoint.data.update(cursor=chunk.end, pending=None)
        checkpoint.save()

    def _recover(self, checkpoint: Checkpoint) -> None:
        """Send what of the interrupted chunk the broker does not have (matched by topic and value)."""
        pending = checkpoint.data["pending"]
        records = list(self.source.window(pending["from"], pending["to"]))
        wanted = Counter((self.topics[r.stream], r.value) for r in records)
        marks = {_tp_of(key): offset for key, offset in pending["marks"].items()}
        ends = end_offsets(self.bootstrap, self.topics.values(), self.security)
        scan = {tp: (marks.get(tp, 0), end) for tp, end in ends.items() if marks.get(tp, 0) < end}
        found: Counter = Counter()
        for message in read_partitions(self.bootstrap, scan, security=self.security):
            key = (message.topic, message.value)
            if found[key] < wanted[key]:
                found[key] += 1
        missing = []
        for record in records:
            key = (self.topics[record.stream], record.value)
            if found[key]:
                found[key] -= 1
            else:
                missing.append(record)
        self.recovered = len(records) - len(missing)
        self.resent = len(missing)
        self._send(missing)
        counts = Counter(record.stream for record in records)
        self.sent.update(Counter(record.stream for record in missing))
        checkpoint.add_sent(counts)
        checkpoint.data.update(cursor=pending["to"], pending=None)
        checkpoint.save()

    def report(self) -> dict:
        report: dict[str, object] = {"sent": dict(self.sent)}
        if self.recovered or self.resent:
            report["interrupted_chunk"] = {"already_sent": self.recovered, "sent_now": self.resent}
        return report

    def close(self) -> None:
        self.producer.close(timeout=30)


class DirectTarget:
    """Straight into ClickHouse through the worker's Pipeline and ClickHouseSink, under pseudo-topics."""

    name = "direct"

    def __init__(self, settings: Settings, source: Source, *, sink=None) -> None:  # noqa: ANN001
        from pulse.worker import build_pipeline, build_sink

        self.sink = sink if sink is not None else build_sink(settings)
        self.identity = f"direct:{redact_url(settings.resolved_clickhouse_url())}"
        self.pipeline = build_pipeline(settings, self.sink)
        self.topic_of = source.pseudo_topics()  # (source, stream) -> pseudo-topic
        self.pipeline.stream_of_topic = {**self.pipeline.stream_of_topic,
                                         **{topic: stream for (_, stream), topic in self.topic_of.items()}}
        self.read: Counter = Counter()
        self.accepted = 0
        self.dead_letters: Counter = Counter()
        self.skipped = 0
        self.restarted_because: str | None = None

    def start(self, checkpoint: Checkpoint | None) -> None:
        """On resume, trust the checkpoint only as far as the store confirms it (it may have been wiped)."""
        if checkpoint is None or not checkpoint.data.get("stored"):
            return
        claimed = {(topic, partition): offset for topic, partition, offset in checkpoint.data["stored"]}
        with self.sink.transaction() as tx:
            held = tx.load_progress(claimed)
        behind = sorted(pid for pid, offset in claimed.items() if pid not in held or held[pid].offset < offset)
        if behind:
            self.restarted_because = f"the store lacks progress the checkpoint records for {behind[0][0]}"
            print(f"replay: {self.restarted_because}; replaying from the beginning (stored lines are skipped)",
                  file=sys.stderr)
            checkpoint.data.update(cursor=checkpoint.data["source_start"], stored=[], sent={}, complete=False)
            checkpoint.save()

    def messages(self, records: list[Record]) -> list:
        from streams.pipeline import Message

        now = time.time()
        return [Message(self.topic_of[(r.source, r.stream)], r.partition, r.offset, r.key, r.value,
                        r.timestamp or now) for r in records]

    def deliver(self, chunk: Chunk, checkpoint: Checkpoint | None) -> None:
        if chunk.records:
            outcome = self.pipeline.process(self.messages(chunk.records))
            self.skipped += outcome.skipped
            self.accepted += outcome.accepted
            for _, record in outcome.dead_letters:
                self.dead_letters[record.reason] += 1
            self.read.update((r.source, r.stream) for r in chunk.records)
        if checkpoint is not None:
            stored = {(topic, partition): offset for topic, partition, offset in checkpoint.data.get("stored") or []}
            for record in chunk.records:
                pid = (self.topic_of[(record.source, record.stream)], record.partition)
                stored[pid] = max(stored.get(pid, -1), record.offset)
            checkpoint.add_sent(Counter(r.stream for r in chunk.records))
            checkpoint.data.update(cursor=chunk.end, pending=None,
                                   stored=[[topic, partition, offset] for (topic, partition), offset in sorted(stored.items())])
            checkpoint.save()

    def report(self) -> dict:
        per_stream: Counter = Counter()
        for (_, stream), count in self.read.items():
            per_stream[stream] += count
        report = {"read": dict(per_stream), "accepted": self.accepted, "dead_letters": dict(self.dead_letters),
                  "skipped_already_stored": self.skipped,
                  "progress_topics": sorted(self.topic_of[key] for key in self.read)}
        if self.restarted_because:
            report["restarted_because"] = self.restarted_because
        return report

    def close(self) -> None:
        self.sink.close()


class _DryRunTransaction:
    def __init__(self, sink: DryRunSink) -> None:
        self.sink = sink

    def load_progress(self, partitions):  # noqa: ANN001, ANN201
        return {pid: self.sink.progress[pid] for pid in partitions if pid in self.sink.progress}

    def counted_copies(self, stream: str, event_ids: list) -> dict:
        known = self.sink.copies
        return {key: known[(stream, key)] for key in event_ids if (stream, key) in known}

    def stored_copies(self, stream: str, event_ids: list) -> dict:
        return {}  # a dry run keeps fingerprints only

    def write(self, batch) -> list[dict]:  # noqa: ANN001
        from streams.pipeline import Progress

        self.sink.progress.update({pid: Progress(p.offset, p.watermark, list(p.leaders))
                                   for pid, p in batch.progress.items()})
        for stream, events in batch.events.items():
            self.sink.copies.update(((stream, e.event_id), copy) for e, copy in zip(events, batch.copies[stream]))
            for event in events:
                day = event.event_time.astimezone(timezone.utc).date().isoformat()
                self.sink.counts[(stream, day, event.province_code)] += 1
        for record in batch.dead_letters:
            self.sink.dead_letters[record.reason] += 1
        return []


class DryRunSink:
    """A sink that stores nothing: it keeps progress in memory and counts what would be written."""

    def __init__(self) -> None:
        self.progress: dict = {}
        self.copies: dict = {}  # (stream, event_id) -> CountedCopy of what would be stored
        self.counts: Counter = Counter()
        self.dead_letters: Counter = Counter()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_DryRunTransaction]:
        yield _DryRunTransaction(self)

    def close(self) -> None:
        pass


class DryRun:
    """Counts per stream, day (UTC, of event time) and province of what would be sent or written."""

    def __init__(self, settings: Settings, source: Source, *, direct: bool) -> None:
        self.name = "direct" if direct else "kafka"
        self.messages = 0
        self.counts: Counter = Counter()
        self.sink = DryRunSink() if direct else None
        self.direct = DirectTarget(settings, source, sink=self.sink) if direct else None

    def start(self, checkpoint: Checkpoint | None) -> None:
        pass

    def deliver(self, chunk: Chunk, checkpoint: Checkpoint | None) -> None:
        self.messages += len(chunk.records)
        if self.direct is not None:
            self.direct.deliver(chunk, None)
            return
        for record in chunk.records:
            self.counts[(record.stream, *_day_and_province(record.value))] += 1

    def report(self) -> dict:
        if self.sink is not None:
            return {"dry_run": True, "messages": self.messages, "would_write": _nested(self.sink.counts),
                    "would_dead_letter": dict(self.sink.dead_letters)}
        return {"dry_run": True, "messages": self.messages, "would_send": _nested(self.counts)}

    def close(self) -> None:
        pass


# --- the command -----------------------------------------------------------------------------------

@dataclass
class ReplayOptions:
    from_file: Path | None = None
    topics: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    from_offsets: list[OffsetRange] | None = None
    direct: bool = False
    speed: float | None = None  # None = max
    dry_run: bool = False
    wait: bool = False
    timeout_s: float = 600.0
    resume: bool = False
    limit: int | None = None
    quiet: bool = True


def make_source(settings: Settings, options: ReplayOptions) -> Source:
    chosen = sum([options.from_file is not None, bool(options.topics), bool(options.from_offsets)])
    if chosen != 1:
        raise PulseUsageError("give exactly one source: --from-file, --topic (with --since/--until) or --from-offsets")
    if options.from_file is not None:
        if options.since or options.until:
            raise PulseUsageError("--since/--until select Kafka messages; they do not apply to --from-file")
        return FileSource(options.from_file)
    if options.from_offsets and (options.since or options.until):
        raise PulseUsageError("--since/--until do not combine with --from-offsets")
    return TopicSource(settings.kafka_bootstrap, topics=options.topics, since=options.since, until=options.until,
                       offsets=options.from_offsets, security=kafka_options(settings))


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM end the chunk in flight cleanly (it is sent and checkpointed), then the run."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _unfinished(path: Path) -> dict | None:
    """The cursor of an interrupted replay recorded at `path`, if there is one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return None if data.get("complete") else data.get("cursor")


def run_replay(settings: Settings, options: ReplayOptions) -> dict[str, object]:
    """Replay as the options say; returns the report printed by `pulse replay`."""
    started = time.monotonic()
    source = make_source(settings, options)
    pacer = None if options.speed is None or options.dry_run else EventTimePacer(options.speed)
    if options.dry_run:
        target = DryRun(settings, source, direct=options.direct)
        size = settings.batch_max_events
    elif options.direct:
        target = DirectTarget(settings, source)
        size = settings.batch_max_events
    else:
        target = KafkaTarget(settings, source)
        size = KAFKA_CHUNK
    checkpoint: Checkpoint | None = None
    resumed = False
    report: dict[str, object] = {"source": source.description, "target": target.name}
    try:
        if not options.dry_run:
            if not options.resume:
                unfinished = _unfinished(Checkpoint.locate(settings.state_dir, source.identity, target.identity))
                if unfinished:
                    report["restarted"] = unfinished
                    print(f"replay: an earlier replay of {source.description} stopped at {unfinished}; starting "
                          "again from the beginning (pass --resume to continue it instead)", file=sys.stderr)
            checkpoint, resumed = Checkpoint.open(settings.state_dir, source, target.identity, resume=options.resume)
            checkpoint.data["runs"] = checkpoint.data.get("runs", 0) + 1
            checkpoint.save()
            report["checkpoint"] = str(checkpoint.path)
            report["resumed"] = resumed
        target.start(checkpoint)
        if checkpoint is not None and resumed and checkpoint.data.get("complete"):
            report.update(target.report(), complete=True, note="already complete; nothing to do")
            return report
        start = checkpoint.data["cursor"] if checkpoint else source.initial_cursor()
        if resumed:
            report["resumed_from"] = start
        ended = None
        with _stop_on_signals() as stop, Tracker(f"replay {source.description}", source.total_units,
                                                 enabled=interactive(options.quiet),
                                                 unit="msgs") as bar:
            for chunk in chunks(source, start, size=size, max_wall_s=PACED_CHUNK_S if pacer else 5.0,
                                pacer=pacer, limit=options.limit, stop=stop):
                target.deliver(chunk, checkpoint)
                position = event_time_of(chunk.records[-1].value) if chunk.records else None
                bar.update(events=len(chunk.records), completed=source.units_done, position=position)
                ended = chunk.ended
        complete = ended == "done"
        if checkpoint is not None:
            checkpoint.data["complete"] = complete
            checkpoint.save()
            report["total_sent"] = checkpoint.data["sent"]
        report.update(target.report(), complete=complete)
        if ended in ("limit", "stopped"):
            report["stopped"] = ended
    finally:
        target.close()
    if options.wait and not options.dry_run and not options.direct:
        security = kafka_options(settings)
        targets = end_offsets(settings.kafka_bootstrap, settings.topics.inputs, security)
        report["waited_s"] = round(wait_for_group(settings.kafka_bootstrap, settings.consumer_group, targets,
                                                  options.timeout_s, security=security), 2)
    report["seconds"] = round(time.monotonic() - started, 2)
    return report


# --- kept for callers of the first version ---------------------------------------------------------

def read_file(path: Path) -> Iterator[Emitted]:
    source = FileSource(path)
    for record in source.records(source.initial_cursor()):
        yield Emitted(record.stream, record.key, record.value, 0.0)


def replay_file(settings: Settings, path: Path, *, wait: bool, timeout_s: float = 600.0) -> dict[str, object]:
    return run_replay(settings, ReplayOptions(from_file=path, wait=wait, timeout_s=timeout_s))
