"""The stream-processing core, free of Faust and of any particular database.

A batch of messages is processed inside one sink transaction: the sink says how far each input
partition has already been stored (offset and event-time watermark), messages up to there are
skipped, the rest are decoded, checked against the worker's clock (the future bound), the partition's
watermark (the allowed lateness) and the copies already stored (one event, one count), and written
together with the new progress. Reprocessing a batch after a crash, a rebalance or a replay therefore
never counts an event twice.

Event-time rules (README, "Event time"), in the order they are applied to each decoded event:
1. future bound: an event more than `max_future_s` ahead of the worker's clock is dead-lettered
   `future_time`; it moves no watermark.
2. lateness: an event more than `lateness_s` behind its partition's watermark is dead-lettered `too_late`.
3. one event, one count: the first stored copy of an `event_id` wins. A later copy with the same content
   is dropped silently; one that differs in anything is dead-lettered `conflicting_duplicate`, its error
   holding the stored copy.
A partition's watermark is the `watermark_quorum`-th highest event time among the events that passed
1 to 3, first copies only (0 until it has counted that many). So fewer outliers than the quorum never
move it, in live data or in a replay of history (where the clock cannot tell a skewed event); and since
rule 1 caps every such event, no burst takes it further ahead of the worker's clock than `max_future_s`.
"""
from __future__ import annotations

import heapq
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import blake2b
from typing import NamedTuple, Protocol
from uuid import UUID

import msgspec
import orjson

from schemas.events import DeadLetter
from schemas.fast_events import FAST_MODELS, DecodedEvent, event_fields, instant_fields
from streams import metrics
from streams.decode import Rejection, decode_values

PartitionId = tuple[str, int]


class Record(Protocol):
    """What the pipeline reads of a Kafka record. The worker's fetched records (streams.batching.FetchedRecord,
    or aiokafka's `ConsumerRecord`) have these attributes, so it hands them over as they are, with no copy per
    record; `Message` has them too, for callers that build records themselves (tests, replay, tools)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> float:
        """Kafka's record timestamp in Unix milliseconds, as aiokafka gives it."""


@dataclass(slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # Kafka record timestamp, Unix milliseconds (aiokafka's unit; see Record)


class CountedCopy(NamedTuple):
    """What `event_index` keeps of the counted copy of an event_id: its content's fingerprint and the message
    it came from (empty topic for events stored before the index had origins)."""

    fingerprint: int
    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class Progress:
    offset: int
    watermark: float  # Unix seconds; 0 when the partition has seen nothing
    leaders: list[float] = field(default_factory=list)  # the quorum highest accepted event times, a heap

    def advance(self, event_ts: float, quorum: int) -> None:
        """Count an accepted event at or above the watermark; the watermark becomes the quorum-th highest."""
        if len(self.leaders) != quorum:  # progress stored before leaders were, or under another quorum
            self.leaders = sorted(self.leaders, reverse=True)[:quorum]
            self.leaders += [self.watermark] * (quorum - len(self.leaders))
            heapq.heapify(self.leaders)
        heapq.heappushpop(self.leaders, event_ts)
        self.watermark = self.leaders[0]


@dataclass
class Batch:
    """What one transaction writes."""

    events: dict[str, list[DecodedEvent]] = field(default_factory=lambda: defaultdict(list))
    copies: dict[str, list[CountedCopy]] = field(default_factory=lambda: defaultdict(list))  # parallel to events
    dead_letters: list[DeadLetter] = field(default_factory=list)
    progress: dict[PartitionId, Progress] = field(default_factory=dict)
    windows: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))  # stream -> minute starts
    oldest_message_timestamp: float = 0.0  # Unix seconds


class SinkTransaction(Protocol):
    def load_progress(self, partitions: Iterable[PartitionId]) -> dict[PartitionId, Progress]: ...

    def counted_copies(self, stream: str, event_ids: list[UUID]) -> dict[UUID, CountedCopy]:
        """The counted copy of each of these events that is stored (fingerprint 0: stored, content unknown)."""

    def stored_copies(self, stream: str, event_ids: list[UUID]) -> dict[UUID, str]:
        """The stored copy of each of these events, as readable text (for conflict messages only)."""

    def write(self, batch: Batch) -> list[dict]:
        """Store the batch; return the window rows it recomputed (dicts with a `table` key)."""


class Sink(Protocol):
    def transaction(self) -> AbstractContextManager[SinkTransaction]: ...


@dataclass
class Outcome:
    window_rows: list[dict]
    dead_letters: list[tuple[bytes | None, DeadLetter]]
    accepted: int
    skipped: int


def _raw_text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", errors="backslashreplace")


def canonical(event: DecodedEvent) -> bytes:
    """The event's content as JSON, instants as Unix seconds: two copies of one event, written with
    different UTC offsets or a legacy province code, give the same bytes. These bytes decide which stored
    copies conflict, across deploys too: tests/streams/test_fingerprint_golden.py pins them."""
    return _canonical_at(event, unix_seconds(event.event_time))


def fingerprint(event: DecodedEvent) -> int:
    """A stable 64-bit digest of `canonical(event)`, never 0 (0 marks copies stored before fingerprints)."""
    return _digest(canonical(event))


def _canonical_at(event: DecodedEvent, event_ts: float) -> bytes:
    """`canonical(event)`, given its event time in Unix seconds (which _route has computed already)."""
    later_instants = _LATER_INSTANTS.get(type(event))
    if later_instants is None:  # a pydantic model (only the contract was sure): its fields as a dict
        fields = event_fields(event)
        fields["event_time"] = event_ts
        return _canonical_json(fields)
    # A Struct: msgspec writes it in field order, as orjson writes the fields' dict (UUIDs, text and its
    # escapes, integers, floats of this range), once its instants are their Unix seconds: no dict built.
    # The copy is shallow and skips __post_init__; tests/streams/test_canonical_bytes.py holds them equal.
    if later_instants:
        seconds = {name: unix_seconds(getattr(event, name)) for name in later_instants}
        return _encode_json(_with_values(event, event_time=event_ts, **seconds))
    return _encode_json(_with_values(event, event_time=event_ts))


def unix_seconds(moment: datetime) -> float:
    """`moment.timestamp()` of an aware datetime, bit for bit, in a quarter of the time for an instant with a UTC
    offset: timestamp() converts both sides of `moment - epoch` to UTC, while subtracting the epoch expressed in
    moment's own tzinfo is plain arithmetic; total_seconds() then divides the same microseconds the same way.
    msgspec hands out one tzinfo object per offset, so the epochs kept here are at most one per offset."""
    zone = moment.tzinfo
    if type(zone) is not timezone:  # naive, or another tzinfo class (pydantic's): as before
        return moment.timestamp()
    epoch = _EPOCHS.get(zone)
    if epoch is None:
        epoch = _EPOCHS[zone] = _EPOCH.astimezone(zone)
    return (moment - epoch).total_seconds()


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCHS: dict[timezone, datetime] = {}


def _canonical_json(fields: dict[str, object]) -> bytes:
    # datetime.timestamp as orjson's `default`: a C call per instant, no Python frame; anything else that
    # orjson cannot write fails as before (a TypeError). An instant already given as its Unix seconds (the
    # float timestamp() returns) is written the same.
    return orjson.dumps(fields, default=datetime.timestamp, option=orjson.OPT_PASSTHROUGH_DATETIME)


_encode_json = msgspec.json.Encoder().encode
_with_values = msgspec.structs.replace
# Struct type -> its instants other than event_time (written as Unix seconds too); pydantic models absent.
_LATER_INSTANTS = {struct: tuple(name for name in instant_fields(struct) if name != "event_time")
                   for struct in FAST_MODELS.values()}
# Copying a ready hasher skips blake2b's keyword parsing and set-up on every event; the digest is the same.
_EMPTY_DIGEST = blake2b(digest_size=8)


def _digest(canonical_bytes: bytes) -> int:
    hasher = _EMPTY_DIGEST.copy()
    hasher.update(canonical_bytes)
    return int.from_bytes(hasher.digest(), "little") or 1


# A CountedCopy from its four values without NamedTuple's __new__ (a Python frame per event).
_new_tuple = tuple.__new__


@dataclass(slots=True)
class _Seen:
    """The counted copy of each event_id stored before this batch or counted in it, keyed by the UUID's int
    (an int hashes in C; a UUID's hash is Python code); the conflicts found."""

    copies: dict[int, CountedCopy]
    conflicts: list[tuple[DeadLetter, UUID]] = field(default_factory=list)


class Pipeline:
    def __init__(self, sink: Sink, topics: dict[str, str], *, lateness_s: float, max_message_bytes: int,
                 max_future_s: float = 300.0, watermark_quorum: int = 3,
                 now: Callable[[], float] = time.time) -> None:
        """`now`: the worker's clock (Unix seconds), read once per batch for the future bound."""
        if watermark_quorum < 1:
            raise ValueError(f"watermark_quorum must be at least 1, got {watermark_quorum}")
        self.sink = sink
        self.stream_of_topic = topics
        self.lateness_s = lateness_s
        self.max_message_bytes = max_message_bytes
        self.max_future_s = max_future_s
        self.watermark_quorum = watermark_quorum
        self.now = now
        for stream in set(topics.values()):  # at zero from the start, so that the first one is an increase
            for reason in _ALERTED_REASONS:
                metrics.DEADLETTERED.labels(stream, reason)

    def process(self, messages: Sequence[Record]) -> Outcome:
        started = time.monotonic()
        with self.sink.transaction() as tx:
            progress = tx.load_progress({(m.topic, m.partition) for m in messages})
            fresh = [m for m in messages if m.offset > progress.get((m.topic, m.partition), _NOTHING).offset]
            batch, keyed_dead = self._build(fresh, progress, tx)
            window_rows = tx.write(batch) if fresh else []
        self._observe(batch, window_rows, started)
        accepted = sum(len(events) for events in batch.events.values())
        return Outcome(window_rows, keyed_dead, accepted, len(messages) - len(fresh))

    def _build(self, messages: list[Record], stored: dict[PartitionId, Progress],
               tx: SinkTransaction) -> tuple[Batch, list]:
        batch = Batch(progress={pid: Progress(p.offset, p.watermark, list(p.leaders)) for pid, p in stored.items()})
        keyed_dead: list[tuple[bytes | None, DeadLetter]] = []
        horizon = self.now() + self.max_future_s
        for stream, stream_messages in self._by_stream(messages):
            results = decode_values(stream, [m.value for m in stream_messages], self.max_message_bytes)
            metrics.CONSUMED.labels(stream).inc(len(stream_messages))
            # Distinct ids, keyed by the UUID's int: an int hashes in C, a UUID's __hash__ is Python code.
            ids = list({r.event_id.int: r.event_id for r in results if not isinstance(r, Rejection)}.values())
            stored = tx.counted_copies(stream, ids) if ids else {}
            seen = _Seen({key.int: copy for key, copy in stored.items()})
            self._route(stream, stream_messages, results, batch, keyed_dead, horizon, seen)
            self._explain_conflicts(stream, seen, batch, tx)
        if messages:
            batch.oldest_message_timestamp = min([m.timestamp for m in messages]) / 1000
        return batch, keyed_dead

    def _by_stream(self, messages: list[Record]) -> Iterator[tuple[str, list[Record]]]:
        grouped: dict[str, list[Record]] = defaultdict(list)
        for message in messages:
            grouped[self.stream_of_topic[message.topic]].append(message)
        return iter(grouped.items())

    def _route(self, stream: str, messages: list[Message], results: list, batch: Batch, keyed_dead: list,
               horizon: float, seen: _Seen) -> None:
        """Apply the event-time rules (module notes) to each decoded event, in offset order."""
        accepted = batch.events[stream]
        counted = batch.copies[stream]
        minutes = batch.windows[stream]
        late = duplicates = 0
        progress, copies = batch.progress, seen.copies  # locals: this loop runs for every event
        lateness_s, quorum = self.lateness_s, self.watermark_quorum
        for message, result in zip(messages, results):
            topic, partition, offset = message.topic, message.partition, message.offset
            state = progress.get((topic, partition))
            if state is None:
                state = progress[topic, partition] = Progress(-1, 0.0)
            state.offset = offset
            if isinstance(result, Rejection):
                self._dead(batch, keyed_dead, message, result.reason, result.error)
                continue
            event_ts = unix_seconds(result.event_time)
            if event_ts > horizon:
                self._dead(batch, keyed_dead, message, "future_time",
                           f"event_time {result.event_time.isoformat()} is more than {self.max_future_s:.0f} s "
                           f"ahead of the worker's clock")
                continue
            if event_ts < state.watermark - lateness_s:
                self._dead(
                    batch, keyed_dead, message, "too_late",
                    f"event_time {result.event_time.isoformat()} is more than {self.lateness_s:.0f} s "
                    f"behind the partition watermark",
                )
                continue
            copy = _new_tuple(CountedCopy, (_digest(_canonical_at(result, event_ts)), topic, partition, offset))
            event_key = result.event_id.int
            first = copies.get(event_key)
            if first == copy:  # this very message, stored before a crash or a rebalance: count it again (idempotent)
                first = None
            if first is not None and first.fingerprint not in (copy.fingerprint, _UNKNOWN):
                record = self._dead(batch, keyed_dead, message, "conflicting_duplicate", "")
                seen.conflicts.append((record, result.event_id))
                continue
            minutes.add(int(event_ts // 60) * 60)  # also for a stored copy: its window may be unfinished (a crash)
            if first is not None:  # the same event again: it neither counts nor votes for the watermark
                duplicates += 1
                continue
            if event_ts < state.watermark:
                late += 1
            else:
                state.advance(event_ts, quorum)
            copies[event_key] = copy
            accepted.append(result)
            counted.append(copy)
        metrics.LATE.labels(stream).inc(late)
        metrics.DUPLICATES.labels(stream).inc(duplicates)

    def _explain_conflicts(self, stream: str, seen: _Seen, batch: Batch, tx: SinkTransaction) -> None:
        """Put the counted copy beside each conflicting one (which the dead letter's `raw` holds). Conflicts
        are rare, so the counted copies are looked up only now, not remembered for every event."""
        if not seen.conflicts:
            return
        conflicting = {key for _, key in seen.conflicts}
        in_batch = {e.event_id: canonical(e).decode() for e in batch.events[stream] if e.event_id in conflicting}
        stored = tx.stored_copies(stream, sorted(conflicting - in_batch.keys()))
        for record, key in seen.conflicts:
            where, first = ("earlier in this batch", in_batch[key]) if key in in_batch else ("stored", stored.get(key))
            record.error = (f"event_id {key} is already counted with different content; the first copy wins "
                            f"({where}): {first or '(not found)'}")

    def _dead(self, batch: Batch, keyed_dead: list, message: Message, reason: str, error: str) -> DeadLetter:
        record = DeadLetter(
            topic=message.topic, partition=message.partition, offset=message.offset,
            key=_raw_text(message.key), reason=reason, error=error, raw=_raw_text(message.value),
        )
        batch.dead_letters.append(record)
        keyed_dead.append((message.key, record))
        return record

    def _observe(self, batch: Batch, window_rows: list[dict], started: float) -> None:
        now = time.time()
        for stream, events in batch.events.items():
            metrics.ACCEPTED.labels(stream).inc(len(events))
        metrics.count_by_province(batch.events)
        for record in batch.dead_letters:
            stream = self.stream_of_topic[record.topic]
            metrics.DEADLETTERED.labels(stream, record.reason).inc()
            if record.reason == "too_late":
                metrics.TOO_LATE.labels(stream).inc()
        for (topic, _), state in batch.progress.items():
            stream = self.stream_of_topic.get(topic)
            if stream and state.watermark:
                metrics.WATERMARK.labels(stream).set(state.watermark)
                metrics.WATERMARK_LAG.labels(stream).set(now - state.watermark)
        for table, count in Counter(row["table"] for row in window_rows).items():
            metrics.WINDOW_ROWS.labels(table).inc(count)
        if batch.oldest_message_timestamp:
            metrics.FRESHNESS.observe(max(0.0, now - batch.oldest_message_timestamp))
        metrics.SINK_BATCH_SECONDS.observe(time.monotonic() - started)
        metrics.SINK_LAST_SUCCESS.set(now)


_NOTHING = Progress(-1, 0.0)
_ALERTED_REASONS = ("future_time", "conflicting_duplicate")  # deploy/prometheus/rules/pulse-eventtime-alerts.yml
_UNKNOWN = 0  # fingerprint of a copy stored before fingerprints existed: taken as the same event
