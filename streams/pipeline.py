"""The stream-processing core, free of Faust and of any particular database.

A batch of messages is processed inside one sink transaction: the sink says how far each input
partition has already been stored (offset and event-time watermark), messages up to there are
skipped, the rest are decoded, checked against the partition's watermark, and written together with
the new progress. Reprocessing a batch after a crash, a rebalance or a replay therefore never counts
an event twice.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from schemas.events import DeadLetter, Event
from streams import metrics
from streams.decode import Rejection, decode_values

PartitionId = tuple[str, int]


@dataclass(slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # Kafka message timestamp, Unix seconds


@dataclass(slots=True)
class Progress:
    offset: int
    watermark: float  # Unix seconds; 0 when the partition has seen nothing


@dataclass
class Batch:
    """What one transaction writes."""

    events: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: list[DeadLetter] = field(default_factory=list)
    progress: dict[PartitionId, Progress] = field(default_factory=dict)
    windows: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))  # stream -> minute starts
    oldest_message_timestamp: float = 0.0


class SinkTransaction(Protocol):
    def load_progress(self, partitions: Iterable[PartitionId]) -> dict[PartitionId, Progress]: ...

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


class Pipeline:
    def __init__(self, sink: Sink, topics: dict[str, str], *, lateness_s: float, max_message_bytes: int) -> None:
        self.sink = sink
        self.stream_of_topic = topics
        self.lateness_s = lateness_s
        self.max_message_bytes = max_message_bytes

    def process(self, messages: Sequence[Message]) -> Outcome:
        started = time.monotonic()
        with self.sink.transaction() as tx:
            progress = tx.load_progress({(m.topic, m.partition) for m in messages})
            fresh = [m for m in messages if m.offset > progress.get((m.topic, m.partition), _NOTHING).offset]
            batch, keyed_dead = self._build(fresh, progress)
            window_rows = tx.write(batch) if fresh else []
        self._observe(batch, window_rows, started)
        accepted = sum(len(events) for events in batch.events.values())
        return Outcome(window_rows, keyed_dead, accepted, len(messages) - len(fresh))

    def _build(self, messages: list[Message], stored: dict[PartitionId, Progress]) -> tuple[Batch, list]:
        batch = Batch(progress={pid: Progress(p.offset, p.watermark) for pid, p in stored.items()})
        keyed_dead: list[tuple[bytes | None, DeadLetter]] = []
        for stream, stream_messages in self._by_stream(messages):
            results = decode_values(stream, [m.value for m in stream_messages], self.max_message_bytes)
            metrics.CONSUMED.labels(stream).inc(len(stream_messages))
            self._route(stream, stream_messages, results, batch, keyed_dead)
        if messages:
            batch.oldest_message_timestamp = min(m.timestamp for m in messages)
        return batch, keyed_dead

    def _by_stream(self, messages: list[Message]) -> Iterator[tuple[str, list[Message]]]:
        grouped: dict[str, list[Message]] = defaultdict(list)
        for message in messages:
            grouped[self.stream_of_topic[message.topic]].append(message)
        return iter(grouped.items())

    def _route(self, stream: str, messages: list[Message], results: list, batch: Batch, keyed_dead: list) -> None:
        """Accept each decoded event unless it is beyond the allowed lateness of its partition."""
        accepted = batch.events[stream]
        minutes = batch.windows[stream]
        seen: set = set()
        late = duplicates = 0
        for message, result in zip(messages, results):
            pid = (message.topic, message.partition)
            state = batch.progress.get(pid)
            if state is None:
                state = batch.progress[pid] = Progress(-1, 0.0)
            state.offset = message.offset
            if isinstance(result, Rejection):
                self._dead(batch, keyed_dead, message, result.reason, result.error)
                continue
            event_ts = result.event_time.timestamp()
            if event_ts < state.watermark - self.lateness_s:
                self._dead(
                    batch, keyed_dead, message, "too_late",
                    f"event_time {result.event_time.isoformat()} is more than {self.lateness_s:.0f} s "
                    f"behind the partition watermark",
                )
                continue
            if event_ts < state.watermark:
                late += 1
            else:
                state.watermark = event_ts
            event_key = result.event_id.int  # an int hashes in C; a UUID's hash is Python code
            if event_key in seen:
                duplicates += 1
            seen.add(event_key)
            accepted.append(result)
            minutes.add(int(event_ts // 60) * 60)
        metrics.LATE.labels(stream).inc(late)
        metrics.DUPLICATES.labels(stream).inc(duplicates)

    def _dead(self, batch: Batch, keyed_dead: list, message: Message, reason: str, error: str) -> None:
        record = DeadLetter(
            topic=message.topic, partition=message.partition, offset=message.offset,
            key=_raw_text(message.key), reason=reason, error=error, raw=_raw_text(message.value),
        )
        batch.dead_letters.append(record)
        keyed_dead.append((message.key, record))

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
