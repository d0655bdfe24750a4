"""A sink that stores nothing, beside the real one (`sinks/sink.py`): it keeps progress and counted copies in
memory and counts per stream, day (UTC) and province what would be written. `pulse replay --direct --dry-run`
runs the worker's pipeline into it."""
from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import timezone
from typing import Any


class _DryRunTransaction:
    def __init__(self, sink: DryRunSink) -> None:
        self.sink = sink

    def load_progress(self, partitions: Iterable[Any]) -> dict:
        return {pid: self.sink.progress[pid] for pid in partitions if pid in self.sink.progress}

    def counted_copies(self, stream: str, event_ids: list) -> dict:
        known = self.sink.copies
        return {key: known[(stream, key)] for key in event_ids if (stream, key) in known}

    def stored_copies(self, stream: str, event_ids: list) -> dict:
        return {}  # a dry run keeps fingerprints only

    def write(self, batch: Any) -> list[dict]:  # streams' Batch: sinks/ does not import streams/ at import time
        from streams.pipeline import (
            Progress,  # the protocol's value type; imported lazily to keep layers apart
        )

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

