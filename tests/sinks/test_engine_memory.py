"""The embedded engine's memory settings: its jemalloc gives pages back at once, and an operator's own
allocator settings win."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process: the engine opens, stores and reads rows, and reports its own
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


def test_engine_gives_freed_pages_back_and_keeps_working() -> None:
    default = _probe({})
    assert default["total"] == [sum(range(100_000)), 100_000]
    assert default["decay"] and default["decay"][0].startswith("opt.dirty_decay_ms: 0"), default["decay"]
    # An operator's own jemalloc settings win over the default.
    own = _probe({"JE_MALLOC_CONF": "dirty_decay_ms:2000"})
    assert own["decay"][0].startswith("opt.dirty_decay_ms: 2000"), own["decay"]
