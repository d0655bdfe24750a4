"""The C allocator's settings for the worker process (glibc malloc, which CPython's large objects and the
native libraries other than chDB use; chDB has its own jemalloc: sinks/client.py).

glibc serves a block above its mmap threshold with a mapping of its own, given back to the system when
freed. The threshold starts at 128 KiB but rises (up to 32 MiB) each time such a block is freed, so after a
few batches a worker's large, short-lived buffers (a batch's lists, insert payloads, fetched data) come from
the heaps instead, where freed space stays resident and fragments across the threads' arenas. Fixing the
threshold keeps those buffers in mappings that go back when each batch is done: ~25 MB less peak RssAnon
for the bench's 300k events (docs/perf/issue-14-startup-memory.md).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt(3) parameter numbers, from glibc's malloc.h
ENV_MMAP_THRESHOLD = "MALLOC_MMAP_THRESHOLD_"  # glibc's own variable: an operator's value wins


def fix_mmap_threshold(threshold_bytes: int) -> bool:
    """Fix glibc's mmap threshold at `threshold_bytes` for this process (0: leave glibc's sliding default).
    Returns whether it was set: not when glibc's own variable is set, or the C library is not glibc."""
    if threshold_bytes <= 0 or ENV_MMAP_THRESHOLD in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        log.info("no glibc mallopt here; the allocator keeps its own settings")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, threshold_bytes))
