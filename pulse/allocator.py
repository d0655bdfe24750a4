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


MADV_PAGEOUT = 21  # madvise(2) advice number, Linux >= 5.4: reclaim these pages now


def read_only_file_mappings(name_part: str, maps_text: str) -> list[tuple[int, int]]:
    """(start, length) of each mapping in `maps_text` (/proc/PID/maps) that maps a file whose name contains
    `name_part` without write permission: code and read-only data, whose resident pages are clean copies of
    the file. Writable mappings are left out: theirs hold relocated, copied-on-write data."""
    ranges = []
    for line in maps_text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "w" in fields[1] or name_part not in os.path.basename(fields[5]):
            continue
        start, end = (int(address, 16) for address in fields[0].split("-"))
        ranges.append((start, end - start))
    return ranges


def page_out_library(name_part: str) -> int:
    """Ask the kernel to reclaim the resident pages of this process's read-only mappings of the libraries whose
    file name contains `name_part`; returns the bytes of mappings advised (0: none, or not on this kernel).

    Why: the embedded engine's library (chDB, ~550 MB) runs a large part of its code once, while it starts
    (static initialisers, the registration of every function and format); those pages stay resident for
    good. MADV_PAGEOUT reclaims them as memory pressure would: a clean page is freed (from the page cache
    too, unless another process maps it, which keeps it), nothing is written, and a page the process needs
    again is read back in on its next use. Pages of anonymous or writable mappings are never touched here."""
    try:
        with open("/proc/self/maps") as maps:
            ranges = read_only_file_mappings(name_part, maps.read())
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:  # no /proc (not Linux), no C library to call
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    for start, length in ranges:
        if libc.madvise(start, length, MADV_PAGEOUT) != 0:
            log.info("madvise(MADV_PAGEOUT) refused (%s): the library's pages stay resident",
                     os.strerror(ctypes.get_errno()))
            return advised
        advised += length
    return advised


def library_resident_mb(name_part: str) -> dict[str, float]:
    """Resident MB of this process's read-only mappings of the libraries whose file name contains `name_part`,
    from /proc/self/smaps: `rss`, and of it `private` (clean pages no other process maps: what a page-out
    frees), `shared` (mapped by other processes too, which keep them resident) and `referenced` (used since
    the page was mapped or the process last cleared its referenced bits, /proc/PID/clear_refs)."""
    totals = {"rss": 0.0, "private": 0.0, "shared": 0.0, "referenced": 0.0}
    fields = {"Rss:": "rss", "Private_Clean:": "private", "Shared_Clean:": "shared", "Referenced:": "referenced"}
    counted = False
    try:
        with open("/proc/self/smaps") as smaps:
            for line in smaps:
                parts = line.split()
                if parts[0].endswith(":"):  # a field of the current mapping
                    if counted and parts[0] in fields:
                        totals[fields[parts[0]]] += int(parts[1]) / 1024
                else:  # the next mapping's header line, as in /proc/self/maps
                    counted = bool(read_only_file_mappings(name_part, line))
    except OSError:  # no /proc: not Linux
        pass
    return {kind: round(mb, 1) for kind, mb in totals.items()}
