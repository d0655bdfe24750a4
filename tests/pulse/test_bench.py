"""`pulse bench` end to end on a small run: it must work and report correct results (speed is not asserted)."""
from __future__ import annotations

import json
import time

from kafka.admin import KafkaAdminClient

from pulse.kafka_tools import end_offsets
from pulse.settings import ALL_TOPICS
from tests.support.services import PulseEnv, WorkerProcess
from tests.support.tables import stored_windows

CONTRACT_KEYS = {"events", "seconds", "events_per_s", "baseline_consume_events_per_s", "ratio",
                 "freshness_p50_s", "freshness_p95_s", "freshness_p99_s", "worker_peak_rss_mb", "correct"}


def test_small_bench_runs_and_is_correct(pulse_env: PulseEnv) -> None:
    result = pulse_env.pulse("bench", "--events", "50000", "--rate", "2000", "--freshness-seconds", "5", timeout=600)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert CONTRACT_KEYS <= report.keys()
    assert report["events"] == 50000
    assert report["correct"] is True
    assert report["events_per_s"] > 0 and report["baseline_consume_events_per_s"] > 0
    assert report["worker_peak_rss_mb"] > 0
    # The split by kind: each its own peak over the same samples, so each is at most the total's peak (plus
    # rounding); the embedded engine's library is mapped from a file and its heaps are anonymous.
    anon, file_backed = report["worker_peak_rss_anon_mb"], report["worker_peak_rss_file_mb"]
    assert 0 < anon <= report["worker_peak_rss_mb"] + 0.1 and 0 < file_backed <= report["worker_peak_rss_mb"] + 0.1
    assert anon + file_backed >= report["worker_peak_rss_mb"] * 0.5
    assert report["freshness_p99_s"] >= report["freshness_p95_s"] >= report["freshness_p50_s"] > 0
    # Faults were injected in the timed run; their dead letters are exactly the malformed messages sent.
    assert report["dead_letters"] == report["dead_letters_expected"] and report["dead_letters"]["malformed_json"] > 0
    assert report["future_time_dead_letters"] == 0
    assert report["windows_checked"] > 0 and report["freshness_samples"] > 0


def test_bench_beside_a_running_worker_leaves_its_store_and_the_live_topics_alone(pulse_env: PulseEnv) -> None:
    """The bench runs on topics of its own (`bench-<id>.` prefix), created for the run and deleted after it:
    a worker on the live topics stores nothing more, and the live topics' end offsets do not move."""
    worker = WorkerProcess(pulse_env, log_name="live-worker")
    try:
        pulse_env.pulse("simulate", "--events", "2000", "--rate", "4000", "--metrics-port", "0")
        pulse_env.wait_until_stored(timeout_s=120)
        before = stored_windows(pulse_env.chdb_url)
        live_before = end_offsets(pulse_env.bootstrap, ALL_TOPICS)
        assert sum(window["tx_count"] for window in before["payments_1m"].values()) > 0, "no live data"

        result = pulse_env.pulse("bench", "--events", "3000", "--rate", "1000", "--freshness-seconds", "2",
                                 timeout=600)
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["events"] == 3000 and report["correct"] is True, report

        assert end_offsets(pulse_env.bootstrap, ALL_TOPICS) == live_before, "the bench wrote to the live topics"
        pulse_env.wait_until_stored(timeout_s=120)
        time.sleep(3)  # a few batch intervals: anything the worker were given would be stored by now
        after = stored_windows(pulse_env.chdb_url)
        print(f"live worker totals before {_totals(before)} after {_totals(after)}; live end offsets "
              f"{sum(live_before.values())} before, {sum(end_offsets(pulse_env.bootstrap, ALL_TOPICS).values())} after")
        assert after == before, "the live worker's windows changed during the bench"
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    admin = KafkaAdminClient(bootstrap_servers=pulse_env.bootstrap)
    try:
        leftovers = [t for t in admin.list_topics() if t.startswith("bench-")]
        groups = [g["group_id"] for g in admin.list_groups() if g["group_id"].startswith("pulse-bench-")]
    finally:
        admin.close()
    assert not leftovers, f"bench topics left behind: {leftovers}"
    assert not groups, f"bench consumer groups left behind: {groups}"


def _totals(windows: dict[str, dict]) -> dict[str, dict[str, int]]:
    """Per window table, each measure summed over all windows."""
    return {table: {name: int(sum(c[name] for c in rows.values())) for name in next(iter(rows.values()), {})}
            for table, rows in windows.items()}


def test_rss_split_reads_this_process_by_kind() -> None:
    """The split adds up to what the kernel reports as the resident set, and grows by what is allocated."""
    import os

    import psutil

    from pulse.bench import rss_split, tree_rss_split

    before = rss_split(os.getpid())
    block = bytearray(64 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    after = rss_split(os.getpid())
    rss_mb = psutil.Process().memory_info().rss / 2**20
    assert abs(sum(after.values()) - rss_mb) < 8
    assert after["anon"] - before["anon"] >= 60
    assert tree_rss_split([os.getpid(), os.getpid()])["anon"] >= 2 * before["anon"]
    assert rss_split(2**22 + 12345) == {}  # no such process: nothing, not an error
    del block
