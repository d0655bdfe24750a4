"""Decode and route CPU µs per event, in batches of 20,000 as the worker sees them (best of REPEATS).

`PYTHONPATH=<tree> python tools/decode_route_ab.py LABEL EVENTS REPEATS`, run from the root of the tree to
measure (another tree's code with this tree's script: an A/B at the same moment). Each repeat clears the
VietQR cache first (the worker's case: dynamic QRs miss), decodes each batch's streams with
streams.decode.decode_values and routes them with Pipeline._route (nothing stored before).
"""
from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_pipeline import messages

from pulse.settings import Settings
from schemas.events import qr_facts
from streams.decode import decode_values
from streams.pipeline import Batch, Message, Pipeline, _Seen

BATCH = 20_000


def batches(events: int, stream_of_topic: dict[str, str]) -> list[dict[str, list[Message]]]:
    all_messages = messages(events)
    grouped = []
    for start in range(0, len(all_messages), BATCH):
        by_stream: dict[str, list[Message]] = defaultdict(list)
        for message in all_messages[start:start + BATCH]:
            by_stream[stream_of_topic[message.topic]].append(message)
        grouped.append(by_stream)
    return grouped


def measure(events: int, repeats: int) -> tuple[float, float]:
    settings = Settings()
    stream_of_topic = {t: s for s, t in settings.topics.streams.items()}
    work = batches(events, stream_of_topic)
    pipeline = Pipeline(None, stream_of_topic, lateness_s=600.0,  # type: ignore[arg-type]
                        max_message_bytes=settings.max_message_bytes, max_future_s=300.0)
    best_decode = best_route = float("inf")
    for _ in range(repeats):
        qr_facts.cache_clear()
        decode_s = route_s = 0.0
        horizon = time.time() + 300.0
        for by_stream in work:
            batch, seen = Batch(), _Seen({})
            for stream, stream_messages in by_stream.items():
                began = time.process_time()
                results = decode_values(stream, [m.value for m in stream_messages], settings.max_message_bytes)
                decoded = time.process_time()
                pipeline._route(stream, stream_messages, results, batch, [], horizon, seen)
                decode_s += decoded - began
                route_s += time.process_time() - decoded
        best_decode, best_route = min(best_decode, decode_s), min(best_route, route_s)
    total = sum(len(ms) for by_stream in work for ms in by_stream.values())
    return best_decode / total * 1e6, best_route / total * 1e6


if __name__ == "__main__":
    decode_us, route_us = measure(int(sys.argv[2]), int(sys.argv[3]))
    print(f"{sys.argv[1]}: decode {decode_us:.2f} route {route_us:.2f} us/event (CPU, best of {sys.argv[3]}, "
          f"batches of {BATCH // 1000}k)")
