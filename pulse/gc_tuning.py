"""The cyclic garbage collector's settings for a long-running worker (issue 14).

With CPython's defaults (a young collection every 700 net allocations) a worker pays the collector for
every batch: each message, record, event id and counted copy lives as long as its batch, so it survives
the young collections, is promoted, and makes the oldest generation grow until a full collection walks
every object the process holds, Faust, aiokafka, pydantic and the imported modules included. Measured in
process (tools/gc_cost.py, a sink that keeps nothing): ~40 % of the pipeline's CPU time per event went to it.

What start-up built lives as long as the process: `gc.freeze()` moves it out of every generation, so no
collection walks it again. A higher first threshold makes young collections rarer; each walks more objects,
but the objects of a batch are walked fewer times before the batch ends. Garbage without cycles is freed by
reference counting as before; cyclic garbage waits at most one young collection longer (at most 50,000
objects; peak RSS in live benches moved by less than the runs differ among themselves, docs/perf/issue-14.md).
"""
from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)


def pause_for_start_up() -> None:
    """No collections while the worker starts (opening the store, migrations, Faust's app): what it builds
    stays for good, and full collections there cost ~0.1-0.25 s of start-up. tune_for_streaming() resumes."""
    gc.disable()


def tune_for_streaming() -> int:
    """Freeze what exists now (call once, when start-up is done) and make young collections rarer; returns
    how many objects were frozen."""
    # No gc.collect() first: it would walk the whole heap (~0.1-0.2 s at start-up, when start-up time counts)
    # to find a few dozen unreachable objects, which stay frozen instead.
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    gc.enable()
    return gc.get_freeze_count()
