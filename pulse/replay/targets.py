"""Replay targets: the input topics (`KafkaTarget`), ClickHouse through the worker's pipeline
(`DirectTarget`), and `DryRun`, which counts instead. Each takes chunks and records them in the checkpoint."""
from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

import orjson

from pulse.kafka_security import kafka_options
from pulse.kafka_tools import end_offsets
from pulse.replay.checkpoint import Checkpoint, redact_url
from pulse.replay.pacer import Chunk
from pulse.replay.records import Record, Source, tp_key, tp_of
from pulse.replay.sources import read_partitions
from pulse.settings import Settings
from sinks.dry_run import DryRunSink

if TYPE_CHECKING:
    from streams.pipeline import Sink


class Target(Protocol):
    """Where a replay's chunks go: `start` (recover from the checkpoint), `deliver` each chunk, then `report`."""

    name: str

    def start(self, checkpoint: Checkpoint | None) -> None: ...

    def deliver(self, chunk: Chunk, checkpoint: Checkpoint | None) -> None: ...

    def report(self) -> dict: ...

    def close(self) -> None: ...


def day_and_province(value: bytes | None) -> tuple[str, str]:
    from schemas.provinces import code_map

    try:
        event = orjson.loads(value or b"")
        code = str(event.get("province_code"))
        day = datetime.fromisoformat(event["event_time"]).astimezone(timezone.utc).date().isoformat()
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return "?", "?"
    return day, code_map().get(code, f"?{code}")


def nested_counts(counter: Counter) -> dict:
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
        self.marks = {tp_key(tp.topic, tp.partition): offset
                      for tp, offset in end_offsets(self.bootstrap, self.topics.values(), self.security).items()}

    def _send(self, records: list[Record]) -> Counter:
        futures = [(record, self.producer.send(self.topics[record.stream], key=record.key, value=record.value))
                   for record in records]
        self.producer.flush(timeout=120)
        counts: Counter = Counter()
        for record, future in futures:
            metadata = future.get(timeout=0)  # raises the send error, if any
            key = tp_key(metadata.topic, metadata.partition)
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
        marks = {tp_of(key): offset for key, offset in pending["marks"].items()}
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

    def __init__(self, settings: Settings, source: Source, *, sink: Sink | None = None) -> None:
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
                        (r.timestamp or now) * 1000) for r in records]  # Message: Kafka's milliseconds

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
            rows = [[topic, partition, offset] for (topic, partition), offset in sorted(stored.items())]
            checkpoint.data.update(cursor=chunk.end, pending=None, stored=rows)
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
            self.counts[(record.stream, *day_and_province(record.value))] += 1

    def report(self) -> dict:
        if self.sink is not None:
            return {"dry_run": True, "messages": self.messages, "would_write": nested_counts(self.sink.counts),
                    "would_dead_letter": dict(self.sink.dead_letters)}
        return {"dry_run": True, "messages": self.messages, "would_send": nested_counts(self.counts)}

    def close(self) -> None:
        pass

