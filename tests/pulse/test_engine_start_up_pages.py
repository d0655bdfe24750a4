"""The worker gives back the pages of chDB's library that only its start-up used (pulse.allocator.page_out_library,
pulse.worker.release_engine_start_up_pages): the resident set falls, and the engine keeps working."""
from __future__ import annotations

import json
import mmap
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pulse.allocator import library_resident_mb, page_out_library, read_only_file_mappings
from pulse.settings import Settings
from pulse.worker import RELEASE_AGAIN_AFTER_S
from tests.support.services import PulseEnv, wait_for

ROOT = Path(__file__).resolve().parents[2]

MAPS = """\
7f4000000000-7f4000100000 r--p 00000000 fe:00 13518462   /site-packages/chdb/_chdb.abi3.so
7f4000100000-7f4000300000 r-xp 00100000 fe:00 13518462   /site-packages/chdb/_chdb.abi3.so
7f4000300000-7f4000310000 rw-p 00300000 fe:00 13518462   /site-packages/chdb/_chdb.abi3.so
7f4000400000-7f4000500000 r-xp 00000000 fe:00 13518999   /usr/lib/libc.so.6
7f4000600000-7f4000700000 rw-p 00000000 00:00 0
7f4000800000-7f4000900000 r--p 00000000 fe:00 13518000   /data/chdb-store/not-a-library/part.bin
"""


def test_only_read_only_mappings_of_the_named_library_are_chosen() -> None:
    ranges = read_only_file_mappings("chdb", MAPS)
    # The writable mapping (relocated data), other files, anonymous memory and a folder named like it are left.
    assert ranges == [(0x7f4000000000, 0x100000), (0x7f4000100000, 0x200000)]


def test_a_files_clean_pages_are_given_back_and_read_again_intact(tmp_path: Path) -> None:
    content = os.urandom(32 * 2**20)
    path = tmp_path / "libsample_pages.so"
    with path.open("wb") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())  # clean pages: what a library's code and read-only data are
    with path.open("rb") as source, mmap.mmap(source.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        assert mapped[:] == content  # every page resident
        before = library_resident_mb("libsample_pages")
        advised = page_out_library("libsample_pages")
        after = library_resident_mb("libsample_pages")
        assert before["rss"] >= 31, before
        assert advised == len(content)
        assert after["rss"] <= 1, after  # nobody else maps this file: every page went
        assert mapped[:] == content  # read back from the file on use


def test_nothing_matches_nothing_is_advised() -> None:
    assert page_out_library("no-library-has-this-name") == 0
    assert library_resident_mb("no-library-has-this-name") == {"rss": 0.0, "private": 0.0, "shared": 0.0,
                                                               "referenced": 0.0}


# In a fresh process, as `pulse worker` does: open and migrate a store, release the engine's start-up pages,
# then store and read rows.
WORKER_START = textwrap.dedent("""
    import json, os, sys, tempfile
    from pulse.allocator import library_resident_mb
    from pulse.bench import rss_split
    from pulse.worker import ENGINE_LIBRARY, release_engine_start_up_pages
    from sinks.client import Warehouse
    from sinks.sink import ClickHouseSink
    with tempfile.TemporaryDirectory() as path:
        sink = ClickHouseSink(Warehouse(f"chdb://{path}/store", keep_open=True))
        sink.migrate()
        before, file_before = library_resident_mb(ENGINE_LIBRARY), rss_split(os.getpid())["file"]
        released = release_engine_start_up_pages(sink)
        after, file_after = library_resident_mb(ENGINE_LIBRARY), rss_split(os.getpid())["file"]
        with sink.warehouse.lease() as client:
            client.command("CREATE TABLE t (n UInt64) ENGINE = MergeTree ORDER BY n")
            client.command("INSERT INTO t SELECT number FROM numbers(100000)")
            total = list(client.query("SELECT sum(n), count() FROM t").result_rows[0])
            tables = client.command("SELECT count() FROM system.tables WHERE database = 'pulse'")
        sink.close()
    print(json.dumps({"before": before, "after": after, "released": released, "file_before": file_before,
                      "file_after": file_after, "total": total, "tables": tables}))
""")


def test_a_worker_releases_the_engines_start_up_pages_and_the_engine_keeps_working() -> None:
    done = subprocess.run([sys.executable, "-c", WORKER_START], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    before, after = found["before"], found["after"]
    assert before["rss"] >= 100, found  # the library is mapped and its start-up pages resident
    # What only this process maps goes (another process on the machine that has chDB open keeps the pages
    # both map resident: those are not this worker's to give back, and show as `shared`).
    # 2 MB of slack: other file pages (Python's, the C library's) may be faulted in meanwhile.
    assert after["rss"] <= before["rss"] - 0.8 * before["private"] + 2, found
    assert found["file_after"] <= found["file_before"] - 0.8 * before["private"] + 2, found  # the process's RssFile
    assert found["released"] >= 0.8 * before["private"] - 2, found
    assert found["total"] == [sum(range(100_000)), 100_000]
    assert found["tables"] >= 10  # the migrated schema is still there


def test_the_release_is_on_by_default_and_can_be_turned_off(monkeypatch, tmp_path: Path) -> None:
    assert Settings(state_dir=tmp_path).release_engine_start_up_pages is True
    monkeypatch.setenv("PULSE_RELEASE_ENGINE_START_UP_PAGES", "false")
    assert Settings(state_dir=tmp_path).release_engine_start_up_pages is False


def _worker_log_once_started(pulse_env: PulseEnv, tmp_path: Path) -> str:
    """The info log (`pulse -v`) of a worker run until it has migrated its store, Faust has started and the
    second release is past."""
    log_path = tmp_path / f"worker-{len(list(tmp_path.glob('worker-*')))}.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "pulse.cli", "-v", "worker", "--no-restart"],
                                  env=pulse_env.env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: all(line in log_path.read_text(errors="replace") for line in
                                 ("applied migrations", "froze the start-up heap")),
                     timeout_s=180, what=f"the worker's start ({log_path})")
            time.sleep(RELEASE_AGAIN_AFTER_S + 5)  # and the second release (or none)
        finally:
            worker.terminate()
            assert worker.wait(timeout=90) == 0, log_path.read_text(errors="replace")[-3000:]
    return log_path.read_text(errors="replace")


def test_pulse_worker_releases_them_after_its_migrations_unless_turned_off(pulse_env: PulseEnv,
                                                                          tmp_path: Path) -> None:
    released = re.findall(r"released chDB's start-up pages: its library's resident pages (\d+) -> (\d+) MB",
                          _worker_log_once_started(pulse_env, tmp_path))
    assert len(released) == 2, released  # once migrated, and once more after RELEASE_AGAIN_AFTER_S
    before, after = map(int, released[0])
    assert before >= 100 and after <= before  # pages another process maps too stay (see above)
    pulse_env.extra["PULSE_RELEASE_ENGINE_START_UP_PAGES"] = "false"
    pulse_env.extra["PULSE_CLICKHOUSE_URL"] = f"chdb://{tmp_path / 'second-store'}"  # migrated again: logged
    assert "released chDB's start-up pages" not in _worker_log_once_started(pulse_env, tmp_path)
