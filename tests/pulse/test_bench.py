"""`pulse bench` end to end on a small run: it must work and report correct results (speed is not asserted)."""
from __future__ import annotations

import json

from tests.support.services import PulseEnv

CONTRACT_KEYS = {"events", "seconds", "events_per_s", "baseline_consume_events_per_s", "ratio",
                 "freshness_p50_s", "freshness_p95_s", "worker_peak_rss_mb", "correct"}


def test_small_bench_runs_and_is_correct(pulse_env: PulseEnv) -> None:
    result = pulse_env.pulse("bench", "--events", "50000", "--rate", "2000", "--freshness-seconds", "5", timeout=600)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert CONTRACT_KEYS <= report.keys()
    assert report["events"] == 50000
    assert report["correct"] is True
    assert report["events_per_s"] > 0 and report["baseline_consume_events_per_s"] > 0
    assert report["worker_peak_rss_mb"] > 0
    assert report["freshness_p95_s"] >= report["freshness_p50_s"] > 0
