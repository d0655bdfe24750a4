"""Whole Pipeline.process on a temporary chDB store: 100k events, the worker's modules imported, wall and CPU.

`PYTHONPATH=<tree> python tools/whole_process_ab.py LABEL default|tuned` from the tree's root (`tuned`: the
collector set as `pulse worker` sets it, pulse/gc_tuning.py; a tree without that module runs `default`).
"""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chdb  # noqa: F401  (the worker's heap)
import pandas  # noqa: F401
from profile_pipeline import messages

import pulse.worker  # noqa: F401
from pulse.settings import Settings
from sinks.client import Warehouse
from sinks.sink import ClickHouseSink
from streams.pipeline import Message, Pipeline

label, tuned = sys.argv[1], sys.argv[2] == "tuned"
settings = Settings()
s_of_t = {t: s for s, t in settings.topics.streams.items()}
raw = [(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp) for m in messages(100000)]
with tempfile.TemporaryDirectory() as state:
    sink = ClickHouseSink(Warehouse(f"chdb://{state}/ch", keep_open=True))
    pipe = Pipeline(sink, s_of_t, lateness_s=600.0, max_message_bytes=settings.max_message_bytes, max_future_s=300.0)
    pipe.process([Message(*r) for r in raw[:100]])
    if tuned:
        from pulse.gc_tuning import tune_for_streaming
        tune_for_streaming()
    w, c = time.perf_counter(), time.process_time()
    for i in range(100, len(raw), 20000):
        pipe.process([Message(*r) for r in raw[i:i+20000]])
    w, c = time.perf_counter() - w, time.process_time() - c
    sink.close()
n = len(raw) - 100
print(f"{label}: {n / w:,.0f} events/s wall, {w / n * 1e6:.1f} us/event wall, {c / n * 1e6:.1f} us/event CPU "
      "(whole process(), chDB)")
