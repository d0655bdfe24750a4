"""An opt-in trace of what moves a worker's Kafka offsets (`PULSE_OFFSET_TRACE_DIR`): assignments, seeks,
revocations, gaps, deliveries, flushes and commits, one JSON line each, per partition and batch (never per
record). Written and flushed line by line to its own file per process, so a worker killed outright leaves
its trace up to the kill. `tests/scale_out` turns it on beside the store and reads it when windows are off,
to tell a loss in the consumer (a hole between deliveries, a commit past unstored offsets) from one in
storage (offsets handed to the sink but not found there)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any

import orjson


class OffsetTrace:
    def __init__(self, directory: str | Path) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / f"offsets-{os.getpid()}.jsonl"
        self._file: IO[bytes] = open(self.path, "ab", buffering=0)  # open for the life of the process

    def write(self, kind: str, **fields: Any) -> None:
        line = {"t": round(time.time(), 3), "pid": os.getpid(), "kind": kind, **fields}
        self._file.write(orjson.dumps(line, default=str) + b"\n")


def tp_name(tp: Any) -> str:
    return f"{tp.topic}:{tp.partition}"
