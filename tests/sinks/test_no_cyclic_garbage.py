"""A stored batch must be freed by reference counting alone.

The worker runs the cyclic garbage collector rarely (pulse.gc_tuning). Anything a batch leaves in a reference
cycle waits for it, and when such a cycle holds the batch's columns the worker's memory grows by a batch each
time: clickhouse-connect's InsertContext did that (sinks.sink.insert_columns).
"""
from __future__ import annotations

import gc
import time
from collections import Counter

from pulse.settings import Settings
from pulse.simulate import SimulationOptions, build_generator
from sinks.sink import ClickHouseSink
from streams.pipeline import Message, Pipeline


def _batches(count: int, size: int) -> list[list[Message]]:
    settings = Settings()
    options = SimulationOptions(seed=11, events=count * size, rate=100_000.0, speed=60.0, demo_key=True)
    topics = settings.topics.streams
    now_ms = time.time() * 1000
    messages = [Message(topics[emitted.stream], offset % 4, offset, emitted.key, emitted.value, now_ms)
                for offset, emitted in enumerate(build_generator(options, settings).events(count * size))]
    return [messages[start:start + size] for start in range(0, len(messages), size)]


def test_a_stored_batch_leaves_no_cyclic_garbage(sink: ClickHouseSink) -> None:
    settings = Settings()
    pipeline = Pipeline(sink, {topic: stream for stream, topic in settings.topics.streams.items()},
                        lateness_s=600.0, max_message_bytes=settings.max_message_bytes, max_future_s=300.0)
    warm_up, *measured = _batches(3, 2_000)
    pipeline.process(warm_up)  # migrations, the client's caches: made once, not per batch
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for batch in measured:
            outcome = pipeline.process(batch)
            assert outcome.accepted > 0
        gc.collect()
        left = Counter(type(thing).__name__ for thing in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not left, f"objects a stored batch left in reference cycles: {left.most_common(10)}"
