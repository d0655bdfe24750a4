"""Reading the workers' offset traces (streams/offset_trace.py) in the scale-out tests: which offsets of a run no
worker ever handed to the sink, and what each worker did on that partition around them."""
from __future__ import annotations

from pathlib import Path

import orjson
from kafka import TopicPartition


def trace_lines(directory: Path) -> list[dict]:
    lines = [orjson.loads(line) for path in sorted(directory.glob("offsets-*.jsonl"))
             for line in path.read_bytes().splitlines() if line.strip()]
    return sorted(lines, key=lambda line: line["t"])


def unflushed(directory: Path, start: dict[TopicPartition, int], end: dict[TopicPartition, int]) -> dict[str, list]:
    """Per partition ("topic:partition"), the ranges [first, last] of offsets in [start, end) that appear in no
    worker's flush: handed to no sink, so stored by no one."""
    flushed: dict[str, list[tuple[int, int]]] = {}
    for line in trace_lines(directory):
        if line["kind"] == "flush":
            flushed.setdefault(line["tp"], []).append((line["first"], line["last"]))
    holes: dict[str, list] = {}
    for tp, stop in end.items():
        name, position = f"{tp.topic}:{tp.partition}", start.get(tp, 0)
        for first, last in sorted(flushed.get(name, [])):
            if first > position:
                holes.setdefault(name, []).append([position, min(first, stop) - 1])
            position = max(position, last + 1)
        if position < stop:
            holes.setdefault(name, []).append([position, stop - 1])
    return holes


def around(directory: Path, holes: dict[str, list], limit: int = 60) -> str:
    """The trace lines about the partitions with holes (and every assignment, revocation and seek), for the
    failure message."""
    names = set(holes)
    picked = [line for line in trace_lines(directory)
              if line.get("tp") in names or line["kind"] in ("assigned", "revoked")
              or (line["kind"] in ("seek_committed", "commit") and names & set(line.get("offsets", {})))]
    return "\n".join(orjson.dumps(line).decode() for line in picked[-limit:])
