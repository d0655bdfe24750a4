"""`pulse archive`: export the raw values of a Kafka range, byte for byte, one per line.

The file is what `pulse replay --from-file` reads, so archive -> replay reproduces the same window
tables. Messages are written merged across partitions in timestamp order (as the worker saw them
arrive), and a `.gz` name gives a gzip file with no name or time in its header, so the same range
always gives the same bytes. The file appears under its name only when complete.

A line cannot hold a tombstone (no value), an empty value or a value with a line break; those are
left out, counted in the report and named on stderr.
"""
from __future__ import annotations

import gzip
import os
import sys
import time
from collections import Counter
from pathlib import Path

from pulse.progress import Tracker, interactive
from pulse.replay.records import event_time_of
from pulse.replay.sources import TopicSource, read_partitions

LINE_BREAKS = (b"\n", b"\r")
REPORT_EVERY = 2000
NAMED_LEFT_OUT = 20  # name this many left-out messages on stderr; count them all


def _unrepresentable(value: bytes | None) -> str | None:
    if value is None:
        return "tombstone"
    if not value:
        return "empty"
    if any(byte in value for byte in LINE_BREAKS):
        return "line_break"
    return None


def run_archive(source: TopicSource, out: Path, *, quiet: bool = True) -> dict[str, object]:
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    written: Counter = Counter()
    left_out: Counter = Counter()
    first_ts = last_ts = None
    try:
        with partial.open("wb") as raw:
            sink = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if out.name.endswith(".gz") else raw
            try:
                with Tracker(f"archive {source.description}", source.total_units, enabled=interactive(quiet),
                             unit="archived") as bar:
                    seen = 0
                    for message in read_partitions(source.bootstrap, source.ranges, security=source.security):
                        seen += 1
                        if source.since_ms is not None and not source.since_ms <= message.timestamp < source.until_ms:
                            continue
                        problem = _unrepresentable(message.value)
                        if problem:
                            left_out[problem] += 1
                            if sum(left_out.values()) <= NAMED_LEFT_OUT:
                                print(f"archive: left out {message.topic}[{message.partition}]@{message.offset} "
                                      f"({problem})", file=sys.stderr)
                        else:
                            sink.write(message.value + b"\n")
                            written[message.topic] += 1
                            first_ts = message.timestamp if first_ts is None else first_ts
                            last_ts = message.timestamp
                        if seen % REPORT_EVERY == 0:
                            bar.update(events=REPORT_EVERY, completed=seen, position=event_time_of(message.value))
                    bar.update(events=seen % REPORT_EVERY, completed=source.total_units)
            finally:
                if sink is not raw:
                    sink.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return {
        "out": str(out),
        "archived": sum(written.values()),
        "by_topic": dict(written),
        "left_out": dict(left_out),
        "ranges": {f"{tp.topic}:{tp.partition}": [start, end] for tp, (start, end) in sorted(source.ranges.items())},
        "first_timestamp_ms": first_ts,
        "last_timestamp_ms": last_ts,
        "seconds": round(time.monotonic() - started, 2),
    }
