"""Per-stage cost of the worker's batch path, timed with perf_counter (no profiler): µs per event.

`PYTHONPATH=. python tools/stage_split.py EVENTS [REPEATS]` from a worktree. Stages: decode
(streams.decode.decode_values per stream, batches of 20,000), fingerprint (streams.pipeline.fingerprint
of every decoded event), route (Pipeline._route, the event-time rules and fingerprints, on those decoded
events with nothing stored before), and the whole Pipeline.process on a temporary chDB store (decode, route, sink
write). Each figure is the best of REPEATS runs: on a shared machine the minimum is the least disturbed.
"""
from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_pipeline import messages

from pulse.settings import Settings
from schemas.events import qr_facts
from sinks.client import Warehouse
from sinks.sink import ClickHouseSink
from streams.decode import Rejection, decode_values
from streams.pipeline import Batch, Message, Pipeline, _Seen, fingerprint

BATCH = 20_000


def _best(seconds: list[float], events: int) -> float:
    return min(seconds) / events * 1e6


def split(events: int, repeats: int) -> dict[str, float]:
    settings = Settings()
    stream_of_topic = {t: s for s, t in settings.topics.streams.items()}
    all_messages = messages(events)
    values: dict[str, list[bytes]] = defaultdict(list)
    for message in all_messages:
        values[stream_of_topic[message.topic]].append(message.value)  # type: ignore[arg-type]
    decode_s, fingerprint_s, route_s, process_s = [], [], [], []
    for _ in range(repeats):
        qr_facts.cache_clear()  # every run pays the VietQR misses the worker pays
        began = time.perf_counter()
        decoded = [r for stream, vs in values.items() for i in range(0, len(vs), BATCH)
                   for r in decode_values(stream, vs[i:i + BATCH], settings.max_message_bytes)]
        decode_s.append(time.perf_counter() - began)
        accepted = [r for r in decoded if not isinstance(r, Rejection)]
        began = time.perf_counter()
        for event in accepted:
            fingerprint(event)
        fingerprint_s.append(time.perf_counter() - began)
        route_s.append(_route_seconds(all_messages, decoded, stream_of_topic, settings.max_message_bytes))
        qr_facts.cache_clear()
        with tempfile.TemporaryDirectory() as state:
            sink = ClickHouseSink(Warehouse(f"chdb://{state}/ch", keep_open=True))
            pipeline = Pipeline(sink, stream_of_topic, lateness_s=600.0,
                                max_message_bytes=settings.max_message_bytes, max_future_s=300.0)
            pipeline.process(all_messages[:100])  # migrations outside the timing
            began = time.perf_counter()
            for start in range(100, len(all_messages), BATCH):
                pipeline.process(all_messages[start:start + BATCH])
            process_s.append(time.perf_counter() - began)
            sink.close()
    return {"decode": _best(decode_s, len(decoded)), "fingerprint": _best(fingerprint_s, len(accepted)),
            "route": _best(route_s, len(decoded)), "process": _best(process_s, len(all_messages) - 100)}


def _route_seconds(all_messages: list[Message], decoded: list, stream_of_topic: dict[str, str],
                   max_bytes: int) -> float:
    """Pipeline._route over the decoded results (in the order split() decoded them), in batches of BATCH."""
    by_stream: dict[str, list[Message]] = defaultdict(list)
    for message in all_messages:
        by_stream[stream_of_topic[message.topic]].append(message)
    pipeline = Pipeline(None, stream_of_topic, lateness_s=600.0, max_message_bytes=max_bytes,  # type: ignore[arg-type]
                        max_future_s=300.0)
    horizon = time.time() + 300.0
    seconds, done = 0.0, 0
    for stream, stream_messages in by_stream.items():
        for i in range(0, len(stream_messages), BATCH):
            results = decoded[done + i:done + i + BATCH]
            batch = Batch()
            began = time.perf_counter()
            pipeline._route(stream, stream_messages[i:i + BATCH], results, batch, [], horizon, _Seen({}))
            seconds += time.perf_counter() - began
        done += len(stream_messages)
    return seconds


if __name__ == "__main__":
    figures = split(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    print("  ".join(f"{stage} {value:.2f} us/event" for stage, value in figures.items()),
          f"(process: {1e6 / figures['process']:,.0f} events/s)")
