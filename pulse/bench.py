"""`pulse bench`: the real path, timed on this machine.

1. Pre-produce N calibrated events into the input topics, with faults the worker must absorb or reject
   (BENCH_FAULTS: duplicates, late and out-of-order events, malformed messages), remembering for every
   window (table, minute, province) each measure's true value and how many dead letters are due.
2. Throughput: one `pulse worker` process, from its start until its consumer group has committed every
   offset (commits follow the ClickHouse flush), with its peak resident memory sampled meanwhile.
   `events_per_s` counts the distinct valid events stored; dead letters and duplicate copies are not throughput.
3. Baseline: a raw aiokafka consumer that only reads and JSON-decodes the same messages.
4. Freshness: a steady load at --rate with event times a little in the past (never ahead of the clock, so
   none is `future_time`). Every stored raw row carries `ingested_at`, the time ClickHouse made it visible
   (a column DEFAULT filled at insert); each event's freshness is that minus its Kafka record timestamp,
   which the producer stamped at send, on the same machine's clock. p50/p95/p99 over every event of the
   three streams.
5. Correctness: every window row (table, window_start, province, every measure and version) equals the
   truth, and the dead letters are exactly the injected malformed messages.
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
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
import psutil
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from pulse import infra
from pulse.errors import PulseError
from pulse.kafka_security import aiokafka_options, kafka_options
from pulse.kafka_tools import committed_offsets, end_offsets, wait_for_group
from pulse.settings import DEMO_PII_KEY, Settings
from pulse.simulate import SimulationOptions, build_generator, event_time_start
from pulse.store import open_run_store
from pulse.supervise import die_with_parent
from pulse.sustained_load import DEFAULT_POOL_EVENTS, LoadError, LoadJob, SustainedLoad
from pulse.window_truth import add_to_window_truth
from schemas.provinces import current_code
from simulators.output import Pacer, make_producer
from sinks.sink import RAW_TABLES
from sinks.windows import WINDOW_SPECS

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


@dataclass
class SustainedOptions:
    """`pulse bench --sustained`: offered rates start_rate, start_rate * factor, ... up to max_rate, each
    held for step_s. A step holds when the producer really offered the rate (within 5%) and the consumer
    group's lag in the step's second half never exceeded lag_bound_s seconds of input. The load is
    pool_events generated events, sent again and again re-stamped (pulse.sustained_load)."""

    start_rate: float = 4000.0
    factor: float = 1.25
    max_rate: float = 60_000.0
    step_s: float = 60.0
    lag_bound_s: float = 5.0
    keep: bool = False
    pool_events: int = DEFAULT_POOL_EVENTS


# Faults the timed run carries: every kind the worker absorbs without changing a window, and malformed
# messages, which it must dead-letter (`malformed_json`) without slowing down.
BENCH_FAULTS = "duplicate=0.01,late=0.01,out_of_order=0.01,malformed=0.002"
# How far behind the clock the freshness load starts: the simulator's per-stream times jitter a little,
# and an event more than max_future_s ahead of the worker's clock would be dead-lettered `future_time`.
FRESHNESS_START_BEHIND_S = 120.0
WINDOW_TABLE_OF_TYPE = {"payment": "payments_1m", "dossier": "dossiers_1m", "id_activation": "id_activations_1m"}


def _window_measures(event: dict) -> dict[str, int]:
    """What one counted event adds to its window row, computed here in plain Python from the generated JSON
    (not by the worker's code), measure by measure."""
    kind = event["type"]
    if kind == "payment":
        ok = event["status"] == "success"
        return {"tx_count": 1, "success_count": int(ok), "amount_vnd": event["amount_vnd"] if ok else 0}
    if kind == "id_activation":
        activated = event.get("step", "activated") == "activated"
        return {"activations": int(activated), "level2_activations": int(activated and event["level"] == 2)}
    submitted, returned = event["stage"] == "submitted", event["stage"] == "returned"
    online = submitted and event["channel"] == "online"
    on_time = datetime.fromisoformat(event["event_time"]) <= datetime.fromisoformat(event["due_time"])
    return {"submitted_online": int(online), "submitted_offline": int(submitted and event["channel"] == "offline"),
            "submitted_full_process_online": int(online and event["full_process"]),
            "completed": int(returned), "completed_on_time": int(returned and on_time),
            "paid_online": int(returned and event["paid_online"]),
            "vneid_authenticated": int(online and event["vneid_authenticated"])}


@dataclass
class WindowTruth:
    """The window rows the worker must store for the messages sent: the first copy of each event_id counts
    (a duplicate sent later adds nothing), a message that is not JSON is one `malformed_json` dead letter."""

    rows: dict[tuple[str, int, str], Counter] = field(default_factory=lambda: defaultdict(Counter))
    seen: set[tuple[str, str]] = field(default_factory=set)
    dead_letters: Counter = field(default_factory=Counter)
    counted: int = 0

    def add(self, value: bytes) -> dict | None:
        """Account for one sent message; returns its event when it is a counted first copy."""
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            self.dead_letters["malformed_json"] += 1
            return None
        identity = (event["type"], event["event_id"])
        if identity in self.seen:
            return None
        self.seen.add(identity)
        minute = int(datetime.fromisoformat(event["event_time"]).timestamp() // 60 * 60)
        row = self.rows[(WINDOW_TABLE_OF_TYPE[event["type"]], minute, current_code(event["province_code"]))]
        row.update(_window_measures(event))
        row["version"] += 1
        self.counted += 1
        return event

    def differences(self, stored: dict[tuple[str, int, str], dict[str, int]], limit: int = 5) -> list[str]:
        """Window rows that differ from the truth (missing, extra, or any measure off), at most `limit`."""
        found = []
        for key in sorted(self.rows.keys() | stored.keys()):
            want = {name: value for name, value in self.rows.get(key, Counter()).items()}
            have = stored.get(key, {})
            names = set(have) | set(want) if have else set(want)
            if any(int(have.get(name, 0)) != int(want.get(name, 0)) for name in names) or not have:
                found.append(f"{key}: stored {have or 'nothing'}, expected {want or 'nothing'}")
                if len(found) >= limit:
                    break
        return found


def stored_window_rows(client, database: str) -> dict[tuple[str, int, str], dict[str, int]]:
    """Every window row in the store (the most complete version of each), keyed like WindowTruth.rows."""
    rows: dict[tuple[str, int, str], dict[str, int]] = {}
    for spec in WINDOW_SPECS.values():
        names = [*spec.measures, "version"]
        result = client.query(f"SELECT toUnixTimestamp(window_start), province_code, {', '.join(names)} "
                              f"FROM {database}.{spec.table} FINAL")
        for minute, province, *values in result.result_rows:
            rows[(spec.table, int(minute), province)] = dict(zip(names, map(int, values)))
    return rows


def freshness_delays(sent_ms: dict[str, int], visible_ms: dict[str, int]) -> list[float]:
    """Seconds from each event's Kafka record timestamp (stamped by the producer at send) to the moment its
    raw row became visible in ClickHouse, paired by event_id, for every event in `visible_ms`.

    Never negative by construction: both times come from this machine's clock, the worker can only read a
    record after the producer stamped it, and ClickHouse stamps the row at insert, after the read. A negative
    value therefore means a broken premise (a clock stepped back, a row paired with the wrong record) and is
    an error, not a number to clip."""
    delays = []
    for event_id, visible in visible_ms.items():
        sent = sent_ms.get(event_id)
        if sent is None:
            raise BenchError(f"event {event_id} is stored but was never sent in this phase")
        if visible < sent:
            raise BenchError(f"event {event_id} visible at {visible} ms before it was sent at {sent} ms: "
                             "the clock went backwards during the run")
        delays.append((visible - sent) / 1000)
    return delays


class BenchError(PulseError, RuntimeError):
    """The bench cannot give a true figure."""


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
    def create_topics(self, replication_factor: int = 1) -> None:
        infra.create_topics(self.settings, replication_factor=replication_factor)

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
        self.windows = WindowTruth()
        self.send_seconds = 0.0

    def produce(self, events: int | None, *, rate: float | None, start: datetime | None, speed: float,
                duration_s: float | None = None, faults: str | None = None) -> int:
        """Send generated events (`events`, or for `duration_s`), adding each to the window truth; returns the
        number of messages sent (duplicates and malformed ones included)."""
        options = SimulationOptions(seed=None if start else 7, events=events, rate=rate or 100_000.0, start=start,
                                    speed=speed, demo_key=True, faults=faults)
        generator = build_generator(options, self.settings)
        producer = make_producer(self.settings.kafka_bootstrap, **self.security)
        pacer = Pacer(rate)
        deadline = time.monotonic() + duration_s if duration_s else None
        count = 0
        began = time.monotonic()
        for emitted in generator.events(events):
            if deadline and time.monotonic() > deadline:
                break
            self.windows.add(emitted.value)
            producer.send(self.topics.streams[emitted.stream], key=emitted.key, value=emitted.value)
            count += 1
            if rate:
                pacer.wait()
        self.send_seconds = time.monotonic() - began  # the offered rate is count / this (set-up, flush excluded)
        producer.flush(timeout=120)
        producer.close(timeout=30)
        return count

    # -- phases -----------------------------------------------------------------------------------
    def throughput(self, worker: subprocess.Popen, started: float) -> tuple[float, dict[str, float]]:
        """Seconds until the group committed every offset, and the worker tree's peak memory (MB) meanwhile:
        `rss` (what `worker_peak_rss_mb` has always been) and, each its own peak, `anon`, `file` and `shmem`."""
        peak = dict.fromkeys(("rss", "anon", "file", "shmem"), 0.0)
        done = threading.Event()

        def sample() -> None:
            process = psutil.Process(worker.pid)
            while not done.is_set():
                try:
                    # The Faust worker is the supervisor's child; count the whole tree.
                    tree = [process, *process.children(recursive=True)]
                    peak["rss"] = max(peak["rss"], sum(p.memory_info().rss for p in tree) / 2**20)
                except psutil.Error:
                    return
                for kind, mb in tree_rss_split([p.pid for p in tree]).items():
                    peak[kind] = max(peak[kind], mb)
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

    def freshness(self) -> tuple[dict[str, int], datetime]:
        """Send the steady load; (event_id -> Kafka record timestamp in ms, when the load began). The rows'
        visibility is read once the worker has stopped (it holds the embedded store while it runs)."""
        since = end_offsets(self.settings.kafka_bootstrap, self.topics.inputs, self.security)
        began = datetime.now(timezone.utc)
        self.produce(None, rate=self.options.rate,
                     start=event_time_start(began, self.options.freshness_s, FRESHNESS_START_BEHIND_S),
                     speed=1.0, duration_s=self.options.freshness_s)
        wait_for_group(self.settings.kafka_bootstrap, self.group,
                       end_offsets(self.settings.kafka_bootstrap, self.topics.inputs, self.security),
                       timeout_s=300, security=self.security)
        return _record_timestamps(self.settings.kafka_bootstrap, since, self.security), began

    def visible_since(self, began: datetime) -> dict[str, int]:
        """event_id -> when its raw row first became visible (ms), for the rows stored since `began`. A batch
        stored twice (a retry after a crash) leaves two rows until they merge: the first one counts."""
        warehouse = open_run_store(self.chdb_url)
        visible: dict[str, int] = {}
        try:
            with warehouse.lease() as client:
                for table in RAW_TABLES.values():
                    rows = client.query(
                        f"SELECT toString(event_id), toUnixTimestamp64Milli(min(ingested_at)) "
                        f"FROM {warehouse.database}.{table} WHERE ingested_at >= {{began:DateTime64(3, 'UTC')}} "
                        f"GROUP BY event_id", parameters={"began": began}).result_rows
                    visible.update((key, int(millis)) for key, millis in rows)
        finally:
            warehouse.close()
        return visible

    def stored_counts(self) -> dict[str, int]:
        """Distinct events in the raw tables and dead letters, read once the worker has stopped."""
        warehouse = open_run_store(self.chdb_url)
        try:
            with warehouse.lease() as client:
                db = warehouse.database
                events = sum(int(client.query(f"SELECT uniqExact(event_id) FROM {db}.{table}").result_rows[0][0])
                             for table in RAW_TABLES.values())
                dead = int(client.query(f"SELECT count() FROM {db}.dead_letters").result_rows[0][0])
        finally:
            warehouse.close()
        return {"events": events, "dead_letters": dead}

    def check_windows(self) -> dict:
        """Every window row and the dead letters against the truth."""
        warehouse = open_run_store(self.chdb_url)
        try:
            with warehouse.lease() as client:
                stored = stored_window_rows(client, warehouse.database)
                dead = dict(client.query(f"SELECT reason, count() FROM {warehouse.database}.dead_letters "
                                         f"GROUP BY reason").result_rows)
        finally:
            warehouse.close()
        differences = self.windows.differences(stored)
        dead_letters = {reason: int(count) for reason, count in dead.items()}
        return {"correct": not differences and dead_letters == dict(self.windows.dead_letters),
                "windows_checked": len(self.windows.rows), "window_differences": differences,
                "dead_letters": dead_letters, "dead_letters_expected": dict(self.windows.dead_letters),
                "future_time_dead_letters": dead_letters.get("future_time", 0)}


def _record_timestamps(bootstrap: str, since: dict[TopicPartition, int], security: dict[str, object]) -> dict[str, int]:
    """event_id -> Kafka record timestamp (ms) of its first copy, for every record from `since` to the end
    offsets now (read to the end, not until a quiet spell: a pause on a loaded machine must not drop any)."""
    stop = end_offsets(bootstrap, list({tp.topic for tp in since}), security)
    remaining = {tp for tp in since if stop.get(tp, 0) > since[tp]}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security)
    consumer.assign(list(since))
    for tp, offset in since.items():
        consumer.seek(tp, offset)
    sent: dict[str, int] = {}
    deadline = time.monotonic() + 300
    try:
        while remaining and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=1000, max_records=10_000).items():
                for record in records:
                    try:
                        event_id = orjson.loads(record.value)["event_id"]
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue  # not an event: never stored, so never in the sample
                    sent[event_id] = min(record.timestamp, sent.get(event_id, record.timestamp))
                if records and records[-1].offset + 1 >= stop[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()
    if remaining:
        raise BenchError(f"could not read back the freshness phase's records of {sorted(map(str, remaining))}")
    return sent


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
        loads, JSONDecodeError = orjson.loads, orjson.JSONDecodeError
        while remaining:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    try:
                        loads(record.value)
                    except JSONDecodeError:  # the injected malformed messages: read and refused, like the worker
                        pass
                count += len(records)
                if records and records[-1].offset + 1 >= partitions[tp][1]:
                    remaining.discard(tp)
        return count, time.monotonic() - began
    finally:
        await consumer.stop()


def run_sustained(settings: Settings, options: SustainedOptions, say=print) -> dict:
    """The highest offered rate one worker keeps up with live (lag bounded for a whole step)."""
    bench = BenchRun(settings, BenchOptions(keep=options.keep), say)
    say(f"bench topics {bench.prefix}* and group {bench.group} (deleted afterwards)")
    bench.create_topics()
    steps: list[dict] = []
    try:
        _climb_with_worker(bench, options, steps, say)
        stored = bench.stored_counts() if steps else {}
    finally:
        if not options.keep:
            import shutil

            shutil.rmtree(bench.state, ignore_errors=True)
    return sustained_report(steps, options, stored)


def _climb_with_worker(bench: BenchRun, options: SustainedOptions, steps: list[dict], say) -> None:
    """The climb with a worker and the load process of its own; the run's topics are deleted however it ends."""
    worker = None
    try:
        with SustainedLoad(LoadJob(bench.settings, options.start_rate, options.pool_events)) as load:
            bench.start_offsets()
            worker = bench.start_worker()
            say(f"generating a pool of {options.pool_events:,} events for the load…")
            load.wait_ready()
            _climb(bench, load, options, steps, say)
    except LoadError as error:
        raise BenchError(f"the bench's load failed: {error}") from None
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
        bench.delete_topics()


def _climb(bench: BenchRun, load: SustainedLoad, options: SustainedOptions, steps: list[dict], say) -> None:
    rate = options.start_rate
    while rate <= options.max_rate:
        say(f"offering {rate:,.0f} events/s for {options.step_s:.0f} s…")
        step = _sustained_step(bench, load, rate, options)
        steps.append(step)
        say(f"  offered {step['offered_events_per_s']:,.0f}/s, lag in the second half at most "
            f"{step['max_lag_events']:,} events: {'held' if step['held'] else 'not held'} (producer "
            f"{step['producer_cpu_us_per_event']} us of CPU an event)")
        if not step["held"]:
            break
        rate *= options.factor


def sustained_report(steps: list[dict], options: SustainedOptions, stored: dict[str, int]) -> dict:
    held = [step["offered_events_per_s"] for step in steps if step["held"]]
    last = steps[-1] if steps else {}
    sent = sum(step["sent"] for step in steps)
    producer_cpu = sum(step["producer_cpu_s"] for step in steps)
    # "producer": the figure is a lower bound, this machine could not offer more; "lag": the worker's limit.
    stopped_by = "max_rate" if last.get("held") else last.get("limited_by", "lag")
    return {"sustained_events_per_s": round(max(held, default=0.0)), "stopped_by": stopped_by,
            "step_s": options.step_s, "lag_bound_s": options.lag_bound_s,
            # Every event offered is a distinct valid one: the store must hold exactly `sent_events`.
            "sent_events": sent, "stored_events": stored.get("events", 0),
            "dead_letters": stored.get("dead_letters", 0),
            "producer_cpu_us_per_event": round(producer_cpu / max(sent, 1) * 1e6, 2),
            "pool_events": options.pool_events, "steps": steps, "cpus": os.cpu_count()}


def step_held(rate: float, offered: float, lags: list[tuple[float, int]],
              options: SustainedOptions) -> tuple[bool, int]:
    """(did the step hold, the largest lag of its second half): the producer offered the rate within 5 % and
    the lag samples (seconds into the step, messages) of the second half stayed within lag_bound_s of input.
    The first half is left out: a worker catching up on the step's first seconds is not falling behind."""
    late_half = [lag for at, lag in lags if at >= options.step_s / 2] or [lag for _, lag in lags]
    max_lag = max(late_half, default=0)
    return offered >= 0.95 * rate and max_lag <= rate * options.lag_bound_s, max_lag


def _sustained_step(bench: BenchRun, load: SustainedLoad, rate: float, options: SustainedOptions) -> dict:
    bootstrap, security, group = bench.settings.kafka_bootstrap, bench.security, bench.group
    began = time.monotonic()
    lags: list[tuple[float, int]] = []

    def sample_lag() -> None:
        ends = end_offsets(bootstrap, bench.topics.inputs, security)
        committed = committed_offsets(bootstrap, group, security)
        lags.append((time.monotonic() - began, sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())))

    report = load.offer(rate, options.step_s, sample_lag)
    offered = report["sent"] / max(report["seconds"], 1e-9)
    held, max_lag = step_held(rate, offered, lags, options)
    try:  # let the worker drain before the next step, so each step starts without a backlog
        wait_for_group(bootstrap, group, end_offsets(bootstrap, bench.topics.inputs, security), timeout_s=120,
                       security=security)
    except TimeoutError:
        held = False
    short = offered < 0.95 * rate  # the producer (same machine) could not offer the rate: no verdict on the worker
    return {"target_events_per_s": round(rate), "offered_events_per_s": round(offered), "max_lag_events": max_lag,
            "held": held, "sent": report["sent"], "producer_cpu_s": round(report["cpu_s"], 3),
            # CPU of the load process per event sent, and in cores while it sent (both include aiokafka's I/O)
            "producer_cpu_us_per_event": round(report["cpu_s"] / max(report["sent"], 1) * 1e6, 2),
            "producer_cores": round(report["cpu_s"] / max(report["seconds"], 1e-9), 3),
            **({"limited_by": "producer"} if short else {})}


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


RSS_KINDS = {"RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}


def rss_split(pid: int) -> dict[str, float]:
    """A process's resident memory by kind (MB), from /proc/PID/status; empty where it cannot be read
    (the process is gone, or the system has no such file)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as status:
            lines = status.readlines()
    except OSError:
        return {}
    split = {}
    for line in lines:
        fields = line.split()  # "RssAnon:   1234 kB"
        if fields and fields[0] in RSS_KINDS:
            split[RSS_KINDS[fields[0]]] = int(fields[1]) / 1024
    return split


def tree_rss_split(pids: list[int]) -> dict[str, float]:
    """`rss_split` summed over processes (the worker's supervisor and its child)."""
    total = dict.fromkeys(RSS_KINDS.values(), 0.0)
    for pid in pids:
        for kind, mb in rss_split(pid).items():
            total[kind] += mb
    return total


def _measure(bench: BenchRun, options: BenchOptions, say) -> dict:
    settings = bench.settings
    start = bench.start_offsets()
    say(f"producing {options.events:,} events (faults {BENCH_FAULTS})…")
    messages = bench.produce(options.events, rate=None, start=None, speed=60.0, faults=BENCH_FAULTS)
    counted = bench.windows.counted
    stop = end_offsets(settings.kafka_bootstrap, bench.topics.inputs, kafka_options(settings))
    say("timing one worker from start to its last stored offset…")
    began = time.monotonic()
    worker = bench.start_worker()
    try:
        seconds, peak = bench.throughput(worker, began)
        say("timing the raw consume baseline…")
        baseline_count, baseline_s = bench.baseline(start, stop)
        say(f"measuring freshness at {options.rate:,.0f} events/s for {options.freshness_s:.0f} s…")
        sent, freshness_began = bench.freshness()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
    delays = freshness_delays(sent, bench.visible_since(freshness_began))
    check = bench.check_windows()
    baseline_rate = baseline_count / baseline_s
    result = {
        "events": options.events,
        "seconds": round(seconds, 2),
        "events_per_s": round(counted / seconds),  # distinct valid events stored; no dead letters, no copies
        "messages_per_s": round(messages / seconds),
        "baseline_consume_events_per_s": round(baseline_rate),
        "ratio": round(messages / seconds / baseline_rate, 3),
        "freshness_p50_s": round(_percentile(delays, 50), 3),
        "freshness_p95_s": round(_percentile(delays, 95), 3),
        "freshness_p99_s": round(_percentile(delays, 99), 3),
        "freshness_max_s": round(max(delays, default=float("nan")), 3),
        "worker_peak_rss_mb": round(peak["rss"], 1),
        # The same samples split by kind, each its own peak: anonymous memory (heaps, engine caches) is what
        # a worker really needs; file-backed pages (mostly libchdb.so's code) are clean and the kernel can drop them.
        "worker_peak_rss_anon_mb": round(peak["anon"], 1),
        "worker_peak_rss_file_mb": round(peak["file"], 1),
        "worker_peak_rss_shmem_mb": round(peak["shmem"], 1),
        "correct": check["correct"],
        "windows_checked": check["windows_checked"],
        "dead_letters": check["dead_letters"],
        "dead_letters_expected": check["dead_letters_expected"],
        "future_time_dead_letters": check["future_time_dead_letters"],
        "freshness_samples": len(delays),
        "messages": messages,
        "faults": BENCH_FAULTS,
        "cpus": os.cpu_count(),
    }
    if check["window_differences"]:
        say("window rows that differ from the truth: " + "; ".join(check["window_differences"]))
    if not options.keep:
        import shutil

        shutil.rmtree(bench.state, ignore_errors=True)
    return result
