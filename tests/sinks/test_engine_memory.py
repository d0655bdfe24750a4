"""The embedded engine's memory settings: its jemalloc gives pages back at once, and its start-up code pages
are dropped from the worker's resident set without changing what the engine does."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from sinks.client import _clean_read_only_mappings

ROOT = Path(__file__).resolve().parents[2]

SMAPS = """\
7f0000000000-7f0000001000 r--p 00000000 08:01 42 /opt/lib/libchdb.so
Size:                  4 kB
Anonymous:             0 kB
7f0000001000-7f0000003000 r-xp 00001000 08:01 42 /opt/lib/libchdb.so
Size:                  8 kB
Anonymous:             0 kB
7f0000003000-7f0000004000 r--p 00003000 08:01 42 /opt/lib/libchdb.so
Size:                  4 kB
Anonymous:             4 kB
7f0000004000-7f0000005000 rw-p 00004000 08:01 42 /opt/lib/libchdb.so
Size:                  4 kB
Anonymous:             0 kB
7f0000005000-7f0000006000 r-xp 00000000 08:01 43 /usr/lib/libc.so.6
Anonymous:             0 kB
7f0000006000-7f0000007000 rw-p 00000000 00:00 0
Anonymous:             4 kB
"""


def test_only_clean_read_only_mappings_of_the_library_are_chosen() -> None:
    # Not the relocated (copied-on-write) read-only part, not the writable data, not another library.
    assert _clean_read_only_mappings(SMAPS.splitlines(), "chdb") == [
        (0x7f0000000000, 0x7f0000001000), (0x7f0000001000, 0x7f0000003000)]
    assert _clean_read_only_mappings(SMAPS.splitlines(), "absent") == []


# In a fresh process: the engine opens (its pages dropped), stores and reads rows, and reports its own
# jemalloc settings and this process's resident memory by kind.
PROBE = textwrap.dedent("""
    import json, os, sys, tempfile
    from pulse.bench import rss_split
    from sinks.client import Warehouse
    with tempfile.TemporaryDirectory() as path:
        warehouse = Warehouse(f"chdb://{path}/store", keep_open=True)
        with warehouse.lease() as client:
            after_open = rss_split(os.getpid())
            client.command("CREATE TABLE t (n UInt64) ENGINE = MergeTree ORDER BY n")
            client.command("INSERT INTO t SELECT number FROM numbers(100000)")
            total = client.query("SELECT sum(n), count() FROM t").result_rows[0]
            stats = client.query("SELECT stats FROM system.jemalloc_stats").result_rows[0][0]
        warehouse.close()
    decay = [line.strip() for line in stats.splitlines() if line.strip().startswith("opt.dirty_decay_ms")]
    print(json.dumps({"file_mb": after_open["file"], "total": list(total), "decay": decay}))
""")


def _probe(env: dict[str, str]) -> dict:
    inherited = {key: value for key, value in os.environ.items() if key != "JE_MALLOC_CONF"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**inherited, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_engine_gives_freed_pages_back_and_keeps_working_with_its_start_up_pages_dropped() -> None:
    default = _probe({})
    assert default["total"] == [sum(range(100_000)), 100_000]  # the engine still works after the drop
    assert default["decay"] and default["decay"][0].startswith("opt.dirty_decay_ms: 0"), default["decay"]
    # Opening chDB alone makes ~200 MB of its library resident; dropped, far less remains.
    assert default["file_mb"] < 150, default
    # An operator's own jemalloc settings win over the default.
    own = _probe({"JE_MALLOC_CONF": "dirty_decay_ms:2000"})
    assert own["decay"][0].startswith("opt.dirty_decay_ms: 2000"), own["decay"]
