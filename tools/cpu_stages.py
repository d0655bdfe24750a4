"""Decode, route and VietQR-miss cost per event in CPU time (time.process_time), best of REPEATS.

`PYTHONPATH=. python tools/cpu_stages.py LABEL EVENTS REPEATS` from a tree (run it from another tree's root to
measure that tree's code). CPU time is less disturbed than wall time when other processes share the cores, so
A/B pairs of this script stay comparable on a loaded machine. Stages: decode (streams.decode.decode_values,
qr_facts cache cleared first), route (Pipeline._route on those results, nothing stored before), and one
uncached qr_facts call per distinct payload (the VietQR check a cache miss pays).
"""
from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_pipeline import messages

from pulse.settings import Settings
from schemas.events import qr_facts
from streams.decode import decode_values
from streams.pipeline import Batch, Message, Pipeline, _Seen


def _cpu_seconds(work: Callable[[], object]) -> tuple[float, object]:
    began = time.process_time()
    result = work()
    return time.process_time() - began, result


def _route_all(pipeline: Pipeline, by_stream: dict[str, list[Message]], results: dict[str, list]) -> None:
    horizon = time.time() + 300.0
    for stream, stream_messages in by_stream.items():
        pipeline._route(stream, stream_messages, results[stream], Batch(), [], horizon, _Seen({}))


def measure(events: int, repeats: int) -> dict[str, float]:
    settings = Settings()
    stream_of_topic = {t: s for s, t in settings.topics.streams.items()}
    by_stream: dict[str, list[Message]] = defaultdict(list)
    for message in messages(events):
        by_stream[stream_of_topic[message.topic]].append(message)
    payloads = list(dict.fromkeys(orjson.loads(m.value)["qr_payload"] for m in by_stream["payments"]))
    pipeline = Pipeline(None, stream_of_topic, lateness_s=600.0,  # type: ignore[arg-type]
                        max_message_bytes=settings.max_message_bytes, max_future_s=300.0)
    limit = settings.max_message_bytes
    best = {"decode": float("inf"), "route": float("inf"), "vietqr_miss": float("inf")}
    for _ in range(repeats):
        qr_facts.cache_clear()
        seconds, results = _cpu_seconds(lambda: {s: decode_values(s, [m.value for m in ms], limit)
                                                 for s, ms in by_stream.items()})
        best["decode"] = min(best["decode"], seconds)
        seconds, _ = _cpu_seconds(partial(_route_all, pipeline, by_stream, results))
        best["route"] = min(best["route"], seconds)
        seconds, _ = _cpu_seconds(lambda: [qr_facts.__wrapped__(p) for p in payloads])
        best["vietqr_miss"] = min(best["vietqr_miss"], seconds)
    total = sum(len(ms) for ms in by_stream.values())
    return {"decode": best["decode"] / total * 1e6, "route": best["route"] / total * 1e6,
            "vietqr_miss": best["vietqr_miss"] / len(payloads) * 1e6}


if __name__ == "__main__":
    figures = measure(int(sys.argv[2]), int(sys.argv[3]))
    print(f"{sys.argv[1]}: decode {figures['decode']:.2f} us/event  route {figures['route']:.2f} us/event  "
          f"vietqr miss {figures['vietqr_miss']:.2f} us/payload (CPU time, best of {sys.argv[3]})")
