"""Profile the worker's batch path in process: generated messages -> streams.pipeline -> sinks.sink on chDB.

No Kafka: the fetch loop is left out, so this shows what one batch costs the worker thread.
`python tools/profile_pipeline.py EVENTS OUT.txt` writes the cProfile top 25 (cumulative and own time).
"""
from __future__ import annotations

import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

from pulse.settings import Settings
from pulse.simulate import SimulationOptions, build_generator
from sinks.client import Warehouse
from sinks.sink import ClickHouseSink
from streams.pipeline import Message, Pipeline


def messages(events: int) -> list[Message]:
    settings = Settings()
    generator = build_generator(SimulationOptions(seed=7, events=events, rate=100_000.0, speed=60.0,
                                                  demo_key=True), settings)
    topics = settings.topics.streams
    out = []
    for offset, emitted in enumerate(generator.events(events)):
        out.append(Message(topics[emitted.stream], offset % 4, offset, emitted.key, emitted.value, time.time() * 1000))
    return out


def main(events: int, report: Path, batch: int = 20_000) -> None:
    settings = Settings()
    all_messages = messages(events)
    with tempfile.TemporaryDirectory() as state:
        sink = ClickHouseSink(Warehouse(f"chdb://{state}/ch", keep_open=True))
        pipeline = Pipeline(sink, {t: s for s, t in settings.topics.streams.items()}, lateness_s=600.0,
                            max_message_bytes=settings.max_message_bytes, max_future_s=300.0)
        pipeline.process(all_messages[:100])  # migrations outside the profile
        profiler = cProfile.Profile()
        began = time.perf_counter()
        profiler.enable()
        for start in range(100, len(all_messages), batch):
            pipeline.process(all_messages[start:start + batch])
        profiler.disable()
        elapsed = time.perf_counter() - began
        sink.close()
    text = io.StringIO()
    text.write(f"{len(all_messages) - 100} events in {elapsed:.2f} s under cProfile "
               f"({(len(all_messages) - 100) / elapsed:,.0f} events/s), batches of {batch}\n")
    for order in ("cumulative", "tottime"):
        text.write(f"\n=== top 25 by {order} ===\n")
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(25)
    report.write_text(text.getvalue())
    print(text.getvalue()[:200])


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
