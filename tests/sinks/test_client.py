"""The embedded store's lease: a worker keeps chDB open across flushes and gives it to a process that asks."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sinks.client import StoreBusy, Warehouse

# A stand-in for a worker in another process: it holds the store and takes a lease every 50 ms, like
# flushes, printing how often it had to open chDB (a reopen means it gave the store away in between).
HOLDER = textwrap.dedent("""
    import sys, time
    from sinks.client import Warehouse
    warehouse = Warehouse(sys.argv[1], keep_open=True, share_on_request=True, lock_timeout_s=30)
    opened, client = 0, None
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        with warehouse.lease() as leased:
            if leased is not client:
                opened, client = opened + 1, leased
                print("opened", opened, flush=True)
            leased.query("SELECT 1")
        time.sleep(0.05)
    warehouse.close()
""")


def start_holder(url: str, seconds: float) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(seconds)], cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "opened 1", holder.stderr.read()
    return holder


def finish(holder: subprocess.Popen) -> str:
    try:
        out, err = holder.communicate(timeout=60)
    finally:
        holder.kill()
    assert holder.returncode == 0, err
    return out


def test_a_sharing_holder_keeps_the_store_open_between_leases(tmp_path: Path) -> None:
    warehouse = Warehouse(f"chdb://{tmp_path / 'store'}", keep_open=True, share_on_request=True)
    try:
        with warehouse.lease() as first:
            first.command("SELECT 1")
        time.sleep(0.5)  # a few polls of the request watcher: nobody asked, so nothing is given back
        with warehouse.lease() as second:
            assert second is first
    finally:
        warehouse.close()


def test_a_waiting_reader_gets_the_store_from_a_busy_holder(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'store'}"
    holder = start_holder(url, seconds=15)
    reader = Warehouse(url, keep_open=False, lock_timeout_s=14)
    asked = time.monotonic()
    try:
        with reader.lease() as client:
            # Behaviour, not speed: the holder is still running (it holds on for 15 s), so it gave the store
            # away on request instead of the reader outwaiting it. The margin holds on a loaded machine.
            still_holding = holder.poll() is None
            assert client.query("SELECT 41 + 1").result_rows == [(42,)]
    finally:
        reader.close()
    waited = time.monotonic() - asked
    assert still_holding, f"the reader got the store only after the holder exited ({waited:.1f} s)"
    # The holder took the store back for its next lease: it opened chDB once more (twice if, on a very
    # loaded machine, it won the lock back before the waiter's next try, and gave it away again).
    opened = finish(holder).split()[-1]
    assert opened in ("2", "3")


def test_a_holder_that_does_not_share_keeps_the_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    holder = Warehouse(f"chdb://{path}", keep_open=True)
    with holder.lease() as client:
        client.command("SELECT 1")
    code = textwrap.dedent(f"""
        from sinks.client import StoreBusy, Warehouse
        try:
            with Warehouse("chdb://{path}", keep_open=False, lock_timeout_s=1).lease():
                print("got it")
        except StoreBusy as error:
            print("busy:", error)
    """)
    try:
        said = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                              capture_output=True, text=True, timeout=60).stdout
    finally:
        holder.close()
    assert said.startswith("busy:") and "held by another process" in said
    assert issubclass(StoreBusy, TimeoutError)


@pytest.fixture(autouse=True)
def _no_leftover_request(tmp_path: Path):
    yield
    # A request file is only a timestamp; it may stay, but it must sit beside the store, not in it.
    assert not (tmp_path / "store" / "store.wanted").exists()
