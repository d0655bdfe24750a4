"""Chunks of a source, held to an event-time speed: a chunk ends before a pause, so nothing waits unsent."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pulse.replay.records import Cursor, Record, Source, event_time_of


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

