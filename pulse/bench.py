"""`pulse bench`: the real path, timed on this machine.

1. Pre-produce N calibrated events (no faults) into the input topics, remembering their true totals.
2. Throughput: one `pulse worker` process, from its start until its consumer group has committed every
   offset (commits follow the ClickHouse flush), with its peak resident memory sampled meanwhile.
3. Baseline: a raw aiokafka consumer that only reads and JSON-decodes the same messages.
4. Freshness: a steady load at --rate with event time = now; each published window row covers `version`
   events of its minute, which dates every event's arrival in ClickHouse.
5. Correctness: window totals in ClickHouse equal the generated totals.
"""
from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
import psutil
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from pulse.kafka_security import aiokafka_options, kafka_options
from pulse.kafka_tools import end_offsets, wait_for_group
from pulse import infra
from pulse.settings import DEMO_PII_KEY, Settings
from pulse.simulate import SimulationOptions, build_generator
from pulse.store import open_run_store
from pulse.supervise import die_with_parent
from pulse.window_truth import add_to_window_truth
from simulators.output import Pacer, make_producer

TOTALS_SQL = {
    "payments_1m": "SELECT sum(tx_count), sum(success_count), sum(amount_vnd) FROM {db}.payments_1m FINAL",
    "dossiers_1m": "SELECT sum(submitted_online), sum(submitted_offline), sum(completed) FROM {db}.dossiers_1m FINAL",
    "id_activations_1m": "SELECT sum(activations), sum(level2_activations) FROM {db}.id_activations_1m FINAL",
}


@dataclass
class BenchOptions:
    events: int = 1_000_000
    rate: float = 5000.0
    freshness_s: float = 20.0
    keep: bool = False


_truth_totals = add_to_window_truth  # public in pulse/window_truth.py (soak uses it too)


class IsolatedRun:
    """A worker of its own beside any running one: its own topics (a prefix `<kind>-<id>.` before the contract's
    names, created by `create_topics` and deleted by `delete_topics`), its own consumer group and its own embedded
    ClickHouse store, so a bench or a soak never reads or writes live data."""

    def __init__(self, settings: Settings, kind: str) -> None:
        run_id = uuid.uuid4().hex[:8]
        self.prefix = f"{kind}-{run_id}."
        self.settings = settings.model_copy(update={"topic_prefix": self.prefix})
        self.topics = self.settings.topics
        self.group = f"pulse-{kind}-{run_id}"
        self.state = settings.state_dir / kind / self.group
        self.chdb_url = f"chdb://{self.state / 'clickhouse'}"
        self.truth: dict[str, Counter] = defaultdict(Counter)
        self.security = kafka_options(settings)

    # -- set-up and clean-up ---------------------------------------------------------------------
    def create_topics(self) -> None:
        infra.create_topics(self.settings)

    def delete_topics(self) -> None:
        """The run's topics and consumer group; called however the run ends."""
        infra.delete_run_topics(self.settings, self.group)

    def start_offsets(self) -> dict[TopicPartition, int]:
        offsets = end_offsets(self.settings.kafka_bootstrap, self.topics.inputs, self.security)
        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, **self.security)
        try:
            admin.alter_group_offsets(self.group, {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        finally:
            admin.close()
        return offsets

    def start_worker(self, *, supervised: bool = False, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """`pulse worker` on this run's group and store; `supervised` restarts its Faust child when it dies."""
        self.state.mkdir(parents=True, exist_ok=True)
        env = {**self.settings.child_env(), "PULSE_CONSUMER_GROUP": self.group, "PULSE_CLICKHOUSE_URL": self.chdb_url,
               "PULSE_TOPIC_PREFIX": self.prefix,
               "PULSE_PII_KEY": os.environ.get("PULSE_PII_KEY", DEMO_PII_KEY), "PULSE_METRICS_PORT": "0",
               "PULSE_CHDB_KEEP_OPEN": "true", **(extra_env or {})}
        command = [sys.executable, "-m", "pulse.cli", "worker", *([] if supervised else ["--no-restart"])]
        log = (self.state / "worker.log").open("ab")
        # If this process is killed outright, its worker goes too instead of consuming on as an orphan.
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def totals_match(self) -> tuple[bool, dict]:
        warehouse = open_run_store(self.chdb_url)
        found = {}
        try:
            with warehouse.lease() as client:
                for table, sql in TOTALS_SQL.items():
                    found[table] = list(client.query(sql.format(db=warehouse.database)).result_rows[0])
        finally:
            warehouse.close()
        expected = {table: list(self.truth[table].values()) for table in TOTALS_SQL}
        return all(sorted(map(int, found[t])) == sorted(map(int, expected[t])) for t in TOTALS_SQL), found


class BenchRun(IsolatedRun):
    def __init__(self, settings: Settings, options: BenchOptions, say) -> None:
        super().__init__(settings, "bench")
        self.options = options
        self.say = say

    def produce(self, events: int | None, *, rate: float | None, start: datetime | None, speed: float,
                duration_s: float | None = None, sent_at: dict | None = None) -> int:
        options = SimulationOptions(seed=None if start else 7, events=events, rate=rate or 100_000.0, start=start,
                                    speed=speed, demo_key=True)
        generator = build_generator(options, self.settings)
        producer = make_producer(self.settings.kafka_bootstrap, **self.security)
        pacer = Pacer(rate)
        deadline = time.monotonic() + duration_s if duration_s else None
        count = 0
        for emitted in generator.events(events):
            if deadline and time.monotonic() > deadline:
                break
            event = orjson.loads(emitted.value)
            _truth_totals(event, self.truth)
            if sent_at is not None and event["type"] == "payment":
                key = (int(emitted.event_time // 60 * 60), event["province_code"])
                sent_at[key].append(time.time())
            producer.send(self.topics.streams[emitted.stream], key=emitted.key, value=emitted.value)
            count += 1
            if rate:
                pacer.wait()
        producer.flush(timeout=120)
        producer.close(timeout=30)
        return count

    # -- phases -----------------------------------------------------------------------------------
    def throughput(self, worker: subprocess.Popen, started: float) -> tuple[float, float]:
        peak = 0.0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            process = psutil.Process(worker.pid)
            while not done.is_set():
                try:
                    # The Faust worker is the supervisor's child; count the whole tree.
                    tree = [process, *process.children(recursive=True)]
                    peak = max(peak, sum(p.memory_info().rss for p in tree) / 2**20)
                except psutil.Error:
                    return
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        targets = end_offsets(self.settings.kafka_bootstrap, self.topics.inputs, self.security)
        try:
            wait_for_group(self.settings.kafka_bootstrap, self.group, targets, timeout_s=1800, poll_s=0.1,
                           security=self.security)
        finally:
            elapsed = time.monotonic() - started
            done.set()
            sampler.join(timeout=2)
        return elapsed, peak

    def baseline(self, start: dict[TopicPartition, int], stop: dict[TopicPartition, int]) -> tuple[int, float]:
        return asyncio.run(_raw_consume(self.settings.kafka_bootstrap, start, stop, aiokafka_options(self.settings)))

    def freshness(self) -> list[float]:
        sent_at: dict[tuple[int, str], list[float]] = defaultdict(list)
        offsets = end_offsets(self.settings.kafka_bootstrap, [self.topics.windows], self.security)
        self.produce(None, rate=self.options.rate, start=datetime.now(timezone.utc), speed=1.0,
                     duration_s=self.options.freshness_s, sent_at=sent_at)
        wait_for_group(self.settings.kafka_bootstrap, self.group,
                       end_offsets(self.settings.kafka_bootstrap, self.topics.inputs, self.security),
                       timeout_s=300, security=self.security)
        return _arrival_delays(self.settings.kafka_bootstrap, offsets, sent_at, self.security)


async def _raw_consume(bootstrap: str, start: dict[TopicPartition, int], stop: dict[TopicPartition, int],
                       security: dict[str, object]):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as AioTP

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000,
                                **security)
    began = time.monotonic()
    await consumer.start()
    try:
        partitions = {AioTP(tp.topic, tp.partition): (start[tp], stop[tp]) for tp in start if stop[tp] > start[tp]}
        consumer.assign(list(partitions))
        for tp, (first, _) in partitions.items():
            consumer.seek(tp, first)
        remaining = {tp for tp in partitions}
        count = 0
        loads = orjson.loads
        while remaining:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    loads(record.value)
                count += len(records)
                if records and records[-1].offset + 1 >= partitions[tp][1]:
                    remaining.discard(tp)
        return count, time.monotonic() - began
    finally:
        await consumer.stop()


def _arrival_delays(bootstrap: str, since: dict[TopicPartition, int],
                    sent_at: dict[tuple[int, str], list[float]], security: dict[str, object]) -> list[float]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000,
                             **security)
    consumer.assign(list(since))
    for tp, offset in since.items():
        consumer.seek(tp, offset)
    covered: dict[tuple[int, str], int] = defaultdict(int)
    delays: list[float] = []
    for record in consumer:
        row = orjson.loads(record.value)
        if row["table"] != "payments_1m":
            continue
        key = (int(datetime.fromisoformat(row["window_start"]).timestamp()), row["province_code"])
        times = sent_at.get(key, [])
        newly = times[covered[key]: row["version"]]
        delays.extend(record.timestamp / 1000 - sent for sent in newly)
        covered[key] = max(covered[key], row["version"])
    consumer.close()
    return delays


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def run(settings: Settings, options: BenchOptions, say=print) -> dict:
    bench = BenchRun(settings, options, say)
    say(f"bench topics {bench.prefix}* and group {bench.group} (deleted afterwards)")
    bench.create_topics()
    try:
        return _measure(bench, options, say)
    finally:
        bench.delete_topics()


def _measure(bench: BenchRun, options: BenchOptions, say) -> dict:
    settings = bench.settings
    start = bench.start_offsets()
    say(f"producing {options.events:,} events…")
    produced = bench.produce(options.events, rate=None, start=None, speed=60.0)
    stop = end_offsets(settings.kafka_bootstrap, bench.topics.inputs, kafka_options(settings))
    say("timing one worker from start to its last stored offset…")
    began = time.monotonic()
    worker = bench.start_worker()
    try:
        seconds, peak_rss = bench.throughput(worker, began)
        say("timing the raw consume baseline…")
        baseline_count, baseline_s = bench.baseline(start, stop)
        say(f"measuring freshness at {options.rate:,.0f} events/s for {options.freshness_s:.0f} s…")
        delays = bench.freshness()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
    correct, _ = bench.totals_match()
    baseline_rate = baseline_count / baseline_s
    result = {
        "events": produced,
        "seconds": round(seconds, 2),
        "events_per_s": round(produced / seconds),
        "baseline_consume_events_per_s": round(baseline_rate),
        "ratio": round(produced / seconds / baseline_rate, 3),
        "freshness_p50_s": round(_percentile(delays, 50), 3),
        "freshness_p95_s": round(_percentile(delays, 95), 3),
        "worker_peak_rss_mb": round(peak_rss, 1),
        "correct": correct,
        "freshness_samples": len(delays),
        "cpus": os.cpu_count(),
    }
    if not options.keep:
        import shutil

        shutil.rmtree(bench.state, ignore_errors=True)
    return result
