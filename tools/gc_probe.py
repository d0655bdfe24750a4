"""The pipeline thread's CPU per event under settings of the cyclic garbage collector, in process (generated
events -> streams.pipeline -> sinks.sink on a temporary chDB store, no Kafka), in batches of 20,000 with two
batches alive at a time as in the worker, the records being streams.batching.FetchedRecord as fetched.

  PYTHONPATH=. python tools/gc_probe.py default|worker|young=N EVENTS

default: CPython's settings; worker: what the worker does after start-up (streams.app.freeze_start_up_heap:
gc.collect() then gc.freeze()); young=N: that, and a young-generation threshold of N instead of 700.
"""
from __future__ import annotations

import gc
import resource
import sys
import tempfile
import time

from pulse.migrate import apply_migrations
from pulse.settings import Settings
from pulse.simulate import SimulationOptions, build_generator
from sinks.client import Warehouse
from sinks.sink import ClickHouseSink
from streams.app import freeze_start_up_heap
from streams.batching import FetchedRecord
from streams.pipeline import Pipeline

BATCH = 20_000
WARM_UP = 2_000


def main(variant: str, events: int) -> None:
    settings = Settings()
    generator = build_generator(SimulationOptions(seed=7, events=events, rate=100_000.0, speed=60.0,
                                                  demo_key=True), settings)
    topics = settings.topics.streams
    sent_ms = int(time.time() * 1000)
    values = [(topics[emitted.stream], emitted.key, emitted.value) for emitted in generator.events(events)]

    def records(first: int, end: int) -> list[FetchedRecord]:
        return [FetchedRecord(topic, offset % 4, offset, sent_ms, 0, key, value, None, len(key or b""), len(value), ())
                for offset, (topic, key, value) in enumerate(values[first:end], first)]

    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as state:
        sink = ClickHouseSink(Warehouse(f"chdb://{state}/ch", keep_open=True))
        apply_migrations(sink.warehouse)
        pipeline = Pipeline(sink, {topic: stream for stream, topic in topics.items()}, lateness_s=600.0,
                            max_message_bytes=settings.max_message_bytes, max_future_s=300.0)
        pipeline.process(records(0, WARM_UP))
        if variant != "default":
            freeze_start_up_heap()
        if variant.startswith("young="):
            gc.set_threshold(int(variant.removeprefix("young=")), *gc.get_threshold()[1:])
        before = [generation["collections"] for generation in gc.get_stats()]
        cpu0 = time.thread_time()
        alive: list[list[FetchedRecord]] = []
        for first in range(WARM_UP, events, BATCH):
            alive = [*alive[-1:], records(first, min(first + BATCH, events))]
            pipeline.process(alive[-1])
        cpu = time.thread_time() - cpu0
        collections = [generation["collections"] - n for generation, n in zip(gc.get_stats(), before)]
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sink.close()
        print(f"{variant:12s} cpu_us_per_event {cpu / (events - WARM_UP) * 1e6:6.2f} "
              f"collections_by_generation {collections} peak_rss_mb {peak_mb:.0f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
