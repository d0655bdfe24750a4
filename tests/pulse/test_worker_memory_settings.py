"""The worker's memory settings are read and take effect: glibc's mmap threshold (pulse/allocator.py) and
the consumer's fetch bounds (Settings -> StreamConfig -> Faust's configuration)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pulse.settings import Settings
from pulse.worker import build_pipeline, stream_config
from sinks.sink import ClickHouseSink
from streams.app import create_app

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process: free a 4 MiB block (glibc's sliding threshold then rises above 1 MiB), then see
# whether a 1 MiB block still gets a mapping of its own (mallinfo2's hblkhd: bytes in such mappings).
PROBE = textwrap.dedent("""
    import ctypes, json, sys
    from pulse.allocator import fix_mmap_threshold

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    was_set = fix_mmap_threshold(int(sys.argv[1]))
    big = bytearray(4 * 2**20)
    del big
    before = libc.mallinfo2().hblkhd
    block = bytearray(2**20)
    print(json.dumps({"set": was_set, "mapped_growth": libc.mallinfo2().hblkhd - before}))
""")


def _probe(threshold: int, env: dict[str, str] | None = None) -> dict:
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", PROBE, str(threshold)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**inherited, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_fixed_threshold_keeps_large_blocks_in_their_own_mappings() -> None:
    fixed = _probe(128 * 1024)
    assert fixed["set"] is True
    assert fixed["mapped_growth"] >= 2**20
    sliding = _probe(0)  # glibc's default: the freed 4 MiB block raised the threshold above 1 MiB
    assert sliding["set"] is False
    assert sliding["mapped_growth"] == 0


def test_glibcs_own_variable_wins() -> None:
    found = _probe(128 * 1024, {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)})
    assert found["set"] is False
    assert found["mapped_growth"] == 0  # glibc applied the operator's 32 MiB, not the setting


def test_the_settings_reach_the_consumer(sink: ClickHouseSink, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PULSE_KAFKA_MAX_POLL_RECORDS", "2500")
    monkeypatch.setenv("PULSE_KAFKA_MAX_PARTITION_FETCH_BYTES", "524288")
    monkeypatch.setenv("PULSE_MALLOC_MMAP_THRESHOLD_BYTES", "65536")
    settings = Settings(state_dir=tmp_path)
    assert settings.malloc_mmap_threshold_bytes == 65536
    app = create_app(stream_config(settings), build_pipeline(settings, sink))
    assert app.conf.broker_max_poll_records == 2500
    assert app.conf.consumer_max_fetch_size == 524288


def test_a_threshold_glibc_would_refuse_is_refused_by_the_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="malloc_mmap_threshold_bytes"):
        Settings(state_dir=tmp_path, malloc_mmap_threshold_bytes=64 * 2**20)
