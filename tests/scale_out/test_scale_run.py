"""The measured scale-out run (`python -m pulse.scale_run`, docs/scaling.md), short: two workers against the
three-broker cluster at a low rate; the report's figures are filled in and the windows are exact."""
from __future__ import annotations

from pathlib import Path

from kafka import TopicPartition

from pulse.scale_run import measure
from pulse.settings import Settings
from tests.scale_out.offset_trace import around, trace_lines, unflushed


def test_a_short_measured_run_with_two_workers_is_exact_and_reports_lag_and_freshness(
        kafka_cluster_settings: Settings, tmp_path: Path) -> None:
    trace = tmp_path / "offset-trace"  # what moved each worker's offsets, read only if the windows are off
    settings = kafka_cluster_settings.model_copy(update={"state_dir": tmp_path, "offset_trace_dir": trace})
    report = measure(settings, minutes=0.25, rate=300, workers=2, drain_timeout_s=180, producers=2,
                     say=lambda _: None)
    assert report["correct"], f"{report['window_differences']}\n{_consumer_side(trace)}"
    assert report["worker_exits"] == [0, 0]
    assert report["brokers"] == 3 and report["workers"] == 2 and report["producers"] == 2
    assert [share["sent"] for share in report["per_producer"]] and \
        sum(share["sent"] for share in report["per_producer"]) == report["events"]
    assert 3000 <= report["events"] <= 5000  # 15 s at 300 events/s, give or take the pacer's start
    assert report["lag_samples"] and report["lag_max_messages"] >= 0
    assert report["freshness_samples"] > 1000
    assert 0 < report["freshness_p50_s"] <= report["freshness_p95_s"] <= report["freshness_p99_s"] < 60


def _consumer_side(trace: Path) -> str:
    """For a failure message: offsets no worker handed to the sink (the run's topics are fresh, so each
    partition starts at 0 and ends after the last offset flushed), with the trace around them."""
    ends: dict[TopicPartition, int] = {}
    for line in trace_lines(trace):
        if line["kind"] == "flush":
            topic, partition = line["tp"].rsplit(":", 1)
            tp = TopicPartition(topic, int(partition))
            ends[tp] = max(ends.get(tp, 0), line["last"] + 1)
    holes = unflushed(trace, {}, ends)
    return f"offsets no worker flushed: {holes}\n{around(trace, holes)}" if holes else "every offset was flushed"
