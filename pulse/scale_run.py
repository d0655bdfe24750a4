"""A measured run of the scaled-out set-up (docs/scaling.md): a steady load of calibrated events (no faults;
event times in the past, pulse.parallel_load.event_time_start) at --rate for --minutes, sent by --producers
processes into a replicated Kafka cluster and stored by --workers workers of one consumer group; reports
consumer lag over the run, freshness (Kafka record timestamp -> its raw row visible in ClickHouse, every
event) and whether the window totals equal what was sent.

    python -m pulse.scale_run --minutes 10 --rate 3500 --workers 2     # its own 3 brokers on free ports
    python -m pulse.scale_run --bootstrap 127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292 ...   # running brokers

It reuses `pulse bench`'s isolated run (own consumer group from the current log ends, own embedded store
under <state dir>/scale/, which the workers hand to each other between flushes). Prints progress on stderr
and one JSON object on the last line of stdout.
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from pulse import infra, kafka_cluster
from pulse.bench import (
    FRESHNESS_START_BEHIND_S,
    BenchOptions,
    BenchRun,
    _percentile,
    _record_timestamps,
    freshness_delays,
)
from pulse.kafka_tools import committed_offsets, end_offsets, wait_for_group
from pulse.parallel_load import default_producers, parallel_produce
from pulse.settings import Settings

SAMPLE_S = 5.0
PARTITIONS = 12



class LagSampler(threading.Thread):
    """Every SAMPLE_S: messages produced but not yet stored (log end minus committed, input topics)."""

    def __init__(self, run: BenchRun) -> None:
        super().__init__(daemon=True, name="lag-sampler")
        self.bench, self.samples, self.stop = run, [], threading.Event()
        self.started_at, self.started_wall = time.monotonic(), time.time()

    def lag(self) -> int:
        bootstrap, security = self.bench.settings.kafka_bootstrap, self.bench.security
        ends = end_offsets(bootstrap, self.bench.topics.inputs, security)
        committed = committed_offsets(bootstrap, self.bench.group, security)
        return sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_S):
            try:
                self.samples.append((round(time.monotonic() - self.started_at, 1), self.lag()))
            except Exception:
                continue


def _start_cluster(settings: Settings) -> tuple[Settings, list[kafka_cluster.BrokerNode]]:
    nodes = kafka_cluster.free_nodes()
    cluster = settings.model_copy(update={"kafka_bootstrap": kafka_cluster.bootstrap(nodes)})
    kafka_cluster.start(cluster, nodes)
    kafka_cluster.create_topics(cluster)
    infra.wait_for_group_coordinator(cluster)
    return cluster, nodes


def measure(settings: Settings, *, minutes: float, rate: float, workers: int, drain_timeout_s: float = 900,
            producers: int | None = None, say=print) -> dict:
    run = BenchRun(settings, BenchOptions(rate=rate, freshness_s=minutes * 60), say)
    replicas = min(len(settings.kafka_bootstrap.split(",")), kafka_cluster.REPLICATION_FACTOR)
    run.create_topics(replication_factor=replicas)
    try:
        return _measure(run, minutes=minutes, rate=rate, workers=workers, drain_timeout_s=drain_timeout_s,
                        producers=producers or default_producers(rate), say=say)
    finally:
        run.delete_topics()


def _measure(run: BenchRun, *, minutes: float, rate: float, workers: int, drain_timeout_s: float, producers: int,
             say) -> dict:
    settings = run.settings
    run.start_offsets()
    inputs_from = end_offsets(settings.kafka_bootstrap, run.topics.inputs, run.security)
    # The workers share one store and hand it to each other between flushes (PULSE_CHDB_KEEP_OPEN=false).
    worker_env = {"PULSE_CHDB_KEEP_OPEN": "false", "PULSE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                  "PULSE_STATE_DIR": str(run.state)}
    processes = [run.start_worker(supervised=True, extra_env=worker_env) for _ in range(workers)]
    sampler = LagSampler(run)
    sampler.start()
    try:
        say(f"sending {rate:,.0f} events/s for {minutes:g} min from {producers} producer processes "
            f"to {workers} workers…")
        load_began = datetime.now(timezone.utc)
        load = parallel_produce(settings, dict(run.topics.streams), run.security, rate=rate,
                                start_behind_s=FRESHNESS_START_BEHIND_S, duration_s=minutes * 60,
                                producers=producers)
        run.windows, sent, sending_s = load.truth, load.sent, load.seconds
        skipped = load.began_at - sampler.started_wall  # the slices generate their events first: not load yet
        say("waiting for the workers to store the rest…")
        drain_s = wait_for_group(settings.kafka_bootstrap, run.group,
                                 end_offsets(settings.kafka_bootstrap, run.topics.inputs, run.security),
                                 timeout_s=drain_timeout_s, security=run.security)
    finally:
        sampler.stop.set()
        sampler.join(timeout=30)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        exits = [process.wait(timeout=120) for process in processes]
    # Freshness as `pulse bench` measures it: Kafka record timestamp -> the raw row's visibility, every event.
    delays = freshness_delays(_record_timestamps(settings.kafka_bootstrap, inputs_from, run.security),
                              run.visible_since(load_began))
    check = run.check_windows()
    samples = [(round(at - skipped, 1), lag) for at, lag in sampler.samples if at >= skipped]
    lags = [lag for _, lag in samples]
    return {
        "events": sent, "seconds": round(sending_s, 1), "events_per_s": round(sent / sending_s, 1),
        "target_events_per_s": rate, "producers": producers, "per_producer": load.per_producer,
        "workers": workers, "brokers": len(settings.kafka_bootstrap.split(",")),
        "lag_max_messages": max(lags, default=None), "lag_p95_messages": _quantile(lags, 95),
        "lag_median_messages": _quantile(lags, 50), "lag_max_s": round(max(lags, default=0) / rate, 2),
        "drain_s": round(drain_s, 1), "freshness_p50_s": round(_percentile(delays, 50), 3),
        "freshness_p95_s": round(_percentile(delays, 95), 3), "freshness_p99_s": round(_percentile(delays, 99), 3),
        "freshness_samples": len(delays), "worker_exits": exits, "correct": check["correct"],
        "windows_checked": check["windows_checked"], "window_differences": check["window_differences"],
        "lag_samples": samples, "state": str(run.state),
    }


def _quantile(values: list[int], q: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pulse.scale_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=3500.0, help="events per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--producers", type=int, default=None,
                        help="producer processes sharing the rate (default: one per 1,000 events/s)")
    parser.add_argument("--bootstrap", default=None, help="running brokers (default: start three on free ports)")
    parser.add_argument("--state-dir", type=Path, default=Path("/tmp/pulse-scale-run"))
    options = parser.parse_args(argv)
    settings = Settings(state_dir=options.state_dir, topic_partitions=PARTITIONS,
                        **({"kafka_bootstrap": options.bootstrap} if options.bootstrap else {}))

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    nodes = []
    try:
        if options.bootstrap is None:
            settings, nodes = _start_cluster(settings)
            say(f"three brokers up at {settings.kafka_bootstrap} (replication 3, min.insync.replicas 2)")
        report = measure(settings, minutes=options.minutes, rate=options.rate, workers=options.workers,
                         producers=options.producers, say=say)
    finally:
        if nodes:
            kafka_cluster.down(settings)
    print(json.dumps(report))
    return 0 if report["correct"] and report["worker_exits"] == [0] * options.workers else 1


if __name__ == "__main__":
    sys.exit(main())
