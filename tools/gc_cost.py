"""What the cyclic garbage collector costs the worker's batch path, in process (no Kafka, nothing stored).

`PYTHONPATH=. python tools/gc_cost.py default|tuned EVENTS` from a tree. The worker's modules are imported
first (Faust, aiokafka, the chDB client, pandas), so that full collections walk a heap like a worker's;
batches of 20,000 Messages are built one at a time, as the fetch side builds them, and processed into a
sink that keeps nothing. `tuned` calls pulse.gc_tuning.tune_for_streaming() first, as the worker does.
Prints CPU µs per event and the wall time spent in collections (gc.callbacks), full ones listed.
"""
from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chdb  # noqa: F401  (the worker's heap)
import pandas  # noqa: F401  (clickhouse-connect imports it on a first insert)
from profile_pipeline import messages

import pulse.worker  # noqa: F401
from pulse.settings import Settings
from sinks.dry_run import DryRunSink
from streams.pipeline import Message, Pipeline

BATCH = 20_000


class _Collections:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0
        self.full_ms: list[float] = []
        self._began = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        took = time.perf_counter() - self._began
        self.seconds += took
        self.count += 1
        if info["generation"] == 2:
            self.full_ms.append(round(took * 1000, 1))


def main(mode: str, events: int) -> None:
    settings = Settings()
    stream_of_topic = {t: s for s, t in settings.topics.streams.items()}
    raw = [(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp) for m in messages(events)]
    sink = DryRunSink()
    pipeline = Pipeline(sink, stream_of_topic, lateness_s=600.0, max_message_bytes=settings.max_message_bytes,
                        max_future_s=300.0)
    if mode == "tuned":
        from pulse.gc_tuning import tune_for_streaming

        tune_for_streaming()
    collections = _Collections()
    gc.callbacks.append(collections)
    began = time.process_time()
    for start in range(0, len(raw), BATCH):
        pipeline.process([Message(*fields) for fields in raw[start:start + BATCH]])
        sink.copies.clear()  # a real sink keeps them in the store, not in the heap
    cpu = time.process_time() - began
    gc.callbacks.remove(collections)
    print(f"{mode}: {cpu / len(raw) * 1e6:.2f} us/event CPU; collections {collections.count}, "
          f"{collections.seconds / len(raw) * 1e6:.2f} us/event wall, full ones (ms): {collections.full_ms}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
