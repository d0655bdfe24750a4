"""`pulse soak`: hours of production compressed into minutes, to catch what a short test cannot.

A steady simulated load (with duplicates, late, out-of-order, too-late and malformed events) runs for N
minutes against a supervised `pulse worker` of its own (own consumer group and ClickHouse store, as in
`pulse bench`), while the worker's Faust child is SIGKILLed now and then and the sink is taken away for a
while through the outage flag file. Meanwhile the worker's resident memory (supervisor and child) and its
consumer lag are sampled. At the end the load stops, the worker drains and stops, and the run passes when

- memory is flat: a linear trend fitted to the samples of quiet running (between disruptions, after a
  warm-up) grows by less than --max-rss-growth-pct over the time it was observed;
- lag stays bounded (below --max-lag) and is back to zero once the load stops;
- every kill was followed by a restart, and the worker stops cleanly on SIGTERM;
- ClickHouse holds exactly what it should: window totals (FINAL) equal those of the accepted events, and
  dead letters by reason equal the rejected ones.
"""
from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
import psutil
from kafka import TopicPartition
from kafka.errors import KafkaError

from pulse.bench import IsolatedRun
from pulse.errors import PulseUsageError
from pulse.kafka_tools import committed_offsets, end_offsets, wait_for_group
from pulse.settings import Settings
from pulse.simulate import SimulationOptions, build_generator, event_time_start
from pulse.store import open_run_store
from pulse.supervise import stop_process
from pulse.window_truth import add_to_window_truth
from simulators.faults import parse_faults
from simulators.generate import Emitted
from simulators.output import make_producer, produce

DEFAULT_FAULTS = ("duplicate=0.01,late=0.02,out_of_order=0.01,too_late=0.005,malformed=0.005,clock_skew=0.001,"
                  "conflicting_duplicate=0.005")
# Fault kinds whose effect AcceptedEvents predicts; the others would need the province and QR rules too.
PREDICTED_FAULTS = {"duplicate", "late", "out_of_order", "too_late", "malformed", "clock_skew",
                    "conflicting_duplicate"}
# The simulator re-sends a duplicate within 50 events of its original; remembering this many recent ids
# recognizes every duplicate without holding all ids of a long run in memory.
RECENT_IDS = 10_000
STOP_TIMEOUT_S = 90.0  # the supervisor itself gives its child 60 s to finish a batch
FAULT_SPAN = 0.75  # operational faults happen in the first three quarters; the rest shows the recovery


@dataclass
class SoakOptions:
    minutes: float = 10.0
    rate: float = 2000.0
    seed: int | None = None
    sample_s: float = 5.0
    faults: str = DEFAULT_FAULTS
    kill_every_s: float = 600.0
    outage_every_s: float = 600.0
    outage_s: float = 15.0
    warmup_s: float | None = None  # None: a sixth of the run, at most 60 s
    max_rss_growth_pct: float = 10.0
    max_lag: int | None = None  # None: two minutes of input at --rate (see lag_limit)
    drain_timeout_s: float = 180.0
    keep: bool = False

    @property
    def duration_s(self) -> float:
        return self.minutes * 60.0

    @property
    def settle_s(self) -> float:
        return self.warmup_s if self.warmup_s is not None else min(60.0, self.duration_s / 6)

    @property
    def lag_limit(self) -> int:
        # A SIGKILLed consumer keeps its partitions until the group's session timeout (15 s by default), so
        # a kill lets that much input pile up, plus the restart, the store opening and any outage meanwhile.
        return self.max_lag if self.max_lag is not None else int(self.rate * 120)


@dataclass
class Sample:
    at_s: float  # since the worker started
    rss_mb: float  # supervisor and Faust child together
    child_pid: int | None
    lag: int | None  # messages not yet committed; None when Kafka did not answer in time
    stored: int | None  # messages committed (so stored) since the soak began; None likewise
    phase: int = 0  # operational faults carried out so far (kills, outage starts and ends)
    in_outage: bool = False


@dataclass
class Limits:
    max_rss_growth_pct: float
    max_lag: int
    max_end_lag: int = 0


@dataclass
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    rss_slope_mb_per_min: float | None = None
    rss_growth_pct: float | None = None
    rss_observed_min: float = 0.0
    max_lag: int | None = None


# -- verdict ----------------------------------------------------------------------------------------
def _segment(sample: Sample) -> tuple[int | None, int]:
    """Samples between two disruptions (a restart, an outage starting or ending) of one worker process.
    A disruption may move memory to a new level once (a fresh process, a refilled buffer); a leak is what
    grows within segments."""
    return sample.child_pid, sample.phase


def settled(samples: list[Sample], warmup_s: float) -> list[Sample]:
    """Samples of quiet running: outside sink outages, and `warmup_s` or more after the segment's process
    first stored something. Before that a new process imports, waits for its partitions (after a SIGKILL
    the group holds them until the session timeout) and opens the store, and after an outage it
    works off the backlog; its memory says nothing about leaks yet."""
    resumed: dict[tuple[int | None, int], float] = {}
    for previous, sample in zip(samples, samples[1:]):
        stored_more = (sample.child_pid is not None and previous.child_pid == sample.child_pid
                       and None not in (sample.stored, previous.stored) and sample.stored > previous.stored)
        if stored_more and not sample.in_outage:
            resumed.setdefault(_segment(sample), sample.at_s)
    return [s for s in samples
            if not s.in_outage and _segment(s) in resumed and s.at_s >= resumed[_segment(s)] + warmup_s]


def _segments(samples: list[Sample]) -> list[list[Sample]]:
    grouped: dict[tuple[int | None, int], list[Sample]] = defaultdict(list)
    for sample in samples:
        grouped[_segment(sample)].append(sample)
    return list(grouped.values())


def rss_slope_mb_per_min(samples: list[Sample]) -> float | None:
    """Least-squares slope shared by all segments, each about its own mean, so that the level changes
    at disruptions neither hide nor fake growth."""
    covariance = variance = 0.0
    for segment in _segments(samples):
        mean_t = statistics.fmean(s.at_s / 60 for s in segment)
        mean_rss = statistics.fmean(s.rss_mb for s in segment)
        covariance += sum((s.at_s / 60 - mean_t) * (s.rss_mb - mean_rss) for s in segment)
        variance += sum((s.at_s / 60 - mean_t) ** 2 for s in segment)
    return covariance / variance if variance else None


def observed_minutes(samples: list[Sample]) -> float:
    """Time covered by the segments: what the slope was measured over, and all it can vouch for."""
    return sum(segment[-1].at_s - segment[0].at_s for segment in _segments(samples)) / 60


def _memory_reasons(samples: list[Sample], warmup_s: float, limits: Limits, verdict: Verdict) -> list[str]:
    steady = settled(samples, warmup_s)
    verdict.rss_slope_mb_per_min = rss_slope_mb_per_min(steady)
    if verdict.rss_slope_mb_per_min is None:
        return ["memory: too few samples from a settled worker to fit a trend (run longer or sample more often)"]
    baseline = statistics.median(s.rss_mb for s in steady)
    verdict.rss_observed_min = observed_minutes(steady)
    verdict.rss_growth_pct = verdict.rss_slope_mb_per_min * verdict.rss_observed_min / baseline * 100
    if verdict.rss_growth_pct > limits.max_rss_growth_pct:
        return [f"memory: grows {verdict.rss_slope_mb_per_min:.1f} MB/min, {verdict.rss_growth_pct:.1f} % over "
                f"{verdict.rss_observed_min:.1f} min of quiet running (limit {limits.max_rss_growth_pct} %)"]
    return []


def _lag_reasons(samples: list[Sample], end_lag: int | None, limits: Limits, verdict: Verdict) -> list[str]:
    lags = [s.lag for s in samples if s.lag is not None]
    verdict.max_lag = max(lags) if lags else None
    reasons = []
    if verdict.max_lag is None or verdict.max_lag > limits.max_lag:
        reasons.append(f"lag: peaked at {verdict.max_lag} messages (limit {limits.max_lag})")
    if end_lag is None or end_lag > limits.max_end_lag:
        reasons.append(f"lag: {end_lag} messages left after the drain (limit {limits.max_end_lag})")
    return reasons


def judge(samples: list[Sample], *, warmup_s: float, limits: Limits, end_lag: int | None, correct: bool,
          kills: int, restarts: int, stopped_cleanly: bool = True) -> Verdict:
    verdict = Verdict(passed=False)
    reasons = _memory_reasons(samples, warmup_s, limits, verdict) if samples else ["memory: no samples"]
    reasons += _lag_reasons(samples, end_lag, limits, verdict)
    if restarts < kills:
        reasons.append(f"restarts: the worker came back {restarts} times after {kills} kills")
    if not stopped_cleanly:
        reasons.append("stop: the worker did not exit 0 on SIGTERM within the time allowed")
    if not correct:
        reasons.append("truth: ClickHouse does not hold what the accepted and rejected events say")
    verdict.reasons, verdict.passed = reasons, not reasons
    return verdict


# -- the expected outcome ---------------------------------------------------------------------------
class AcceptedEvents:
    """What the worker must store of the events sent, by the rules it applies: malformed JSON and events
    more than the allowed lateness behind the watermark are dead-lettered, duplicates count once.

    The worker keeps a watermark per partition, this one per stream; both lead to the same decisions
    because partitions of a stream advance together and a too-late event is tens of minutes behind."""

    def __init__(self, totals: dict[str, Counter], lateness_s: float, max_future_s: float = 300.0) -> None:
        self.totals = totals  # the bench's window totals, filled by its own truth function
        self.lateness_s = lateness_s
        self.max_future_s = max_future_s
        self.dead_letters: Counter = Counter()
        self.watermarks: dict[str, float] = defaultdict(float)
        self.recent_ids: OrderedDict[str, bytes] = OrderedDict()  # event_id -> the first copy sent
        self.count = 0  # distinct events the worker must store

    def add(self, emitted: Emitted) -> None:
        try:
            event = orjson.loads(emitted.value)
        except orjson.JSONDecodeError:
            self.dead_letters["malformed_json"] += 1
            return
        if emitted.event_time > time.time() + self.max_future_s:  # clock_skew: years ahead, no race here
            self.dead_letters["future_time"] += 1
            return
        if emitted.event_time < self.watermarks[emitted.stream] - self.lateness_s:
            self.dead_letters["too_late"] += 1
            return
        first = self.recent_ids.get(event["event_id"])
        if first is not None:
            if first != emitted.value:
                self.dead_letters["conflicting_duplicate"] += 1
            return
        self.watermarks[emitted.stream] = max(self.watermarks[emitted.stream], emitted.event_time)
        self.recent_ids[event["event_id"]] = emitted.value
        if len(self.recent_ids) > RECENT_IDS:
            self.recent_ids.popitem(last=False)
        self.count += 1
        add_to_window_truth(event, self.totals)


def fault_plan(duration_s: float, kill_every_s: float, outage_every_s: float,
               outage_s: float) -> list[tuple[float, str]]:
    """(seconds after start, action): at least one kill and one outage, spread over the first three
    quarters of the run. Each kill comes late in its share of the run, so the worker it ends has had time
    to show its memory; outages come earlier, apart from kills, so each recovery is seen on its own."""
    span = FAULT_SPAN * duration_s
    kills = max(1, int(duration_s // kill_every_s))
    outages = max(1, int(duration_s // outage_every_s))
    length = min(outage_s, 0.15 * duration_s)
    plan = [((i + 0.9) * span / kills, "kill") for i in range(kills)]
    for i in range(outages):
        start = (i + 0.3) * span / outages
        plan += [(start, "outage-start"), (start + length, "outage-end")]
    return sorted(plan)


# -- the run ----------------------------------------------------------------------------------------
def worker_memory(worker_pid: int) -> tuple[float, int | None]:
    """Resident MB of the supervisor and its children, and the Faust child's pid."""
    supervisor = psutil.Process(worker_pid)
    children = supervisor.children(recursive=True)
    rss = sum(p.memory_info().rss for p in (supervisor, *children)) / 2**20
    return rss, children[0].pid if children else None


def group_progress(run: IsolatedRun, start: dict[TopicPartition, int]) -> tuple[int, int]:
    """(lag, stored): messages not yet committed by the run's group, and messages committed since `start`."""
    ends = end_offsets(run.settings.kafka_bootstrap, run.topics.inputs, run.security)
    committed = committed_offsets(run.settings.kafka_bootstrap, run.group, run.security)
    done = {tp: committed.get(tp, start.get(tp, 0)) for tp in ends}
    lag = sum(max(0, end - done[tp]) for tp, end in ends.items())
    return lag, sum(max(0, done[tp] - start.get(tp, 0)) for tp in ends)


class Soak:
    def __init__(self, settings: Settings, options: SoakOptions, say: Callable[[str], None]) -> None:
        self.settings = settings
        self.options = options
        self.say = say
        self.run = IsolatedRun(settings, "soak")
        self.outage_flag = self.run.state / "sink-outage"
        self.accepted = AcceptedEvents(self.run.truth, settings.allowed_lateness_s, settings.max_future_s)
        self.samples: list[Sample] = []
        self.kills = self.outages = 0
        self.phase = 0
        self.start: dict[TopicPartition, int] = {}
        self.began = time.monotonic()
        self.done = threading.Event()
        self.operator_error: BaseException | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def start_worker(self) -> subprocess.Popen:
        self.start = self.run.start_offsets()
        self.began = time.monotonic()
        # A short retry ceiling, so the worker notices the end of an outage within seconds (default 30 s).
        return self.run.start_worker(supervised=True, extra_env={
            "PULSE_SINK_OUTAGE_FLAG": str(self.outage_flag),
            "PULSE_SINK_RETRY_MAX_S": os.environ.get("PULSE_SINK_RETRY_MAX_S", "5")})

    # -- operator thread: samples, and carries out the planned faults on time ---------------------
    def operate(self, worker: subprocess.Popen, plan: list[tuple[float, str]]) -> None:
        try:
            pending = list(plan)
            next_sample = 0.0
            while not self.done.wait(0.1):
                while pending and pending[0][0] <= self.elapsed():
                    _, action = pending.pop(0)
                    if self.act(action, worker):
                        self.phase += 1
                    else:
                        pending.insert(0, (self.elapsed() + 1.0, action))  # no child yet: try again shortly
                if self.elapsed() >= next_sample:
                    next_sample = self.elapsed() + self.options.sample_s
                    self.sample(worker)
        except BaseException as error:  # reported by the main thread, which owns the verdict
            self.operator_error = error

    def act(self, action: str, worker: subprocess.Popen) -> bool:
        if action == "kill":
            return self.kill_child(worker)
        if action == "outage-start":
            self.outage_flag.touch()
            self.say(f"{self.elapsed():6.0f} s  sink outage begins")
        else:
            self.end_outage()
        return True

    def kill_child(self, worker: subprocess.Popen) -> bool:
        children = psutil.Process(worker.pid).children()
        if not children:
            return False
        children[0].send_signal(signal.SIGKILL)
        self.kills += 1
        self.say(f"{self.elapsed():6.0f} s  SIGKILL to the worker's Faust process (pid {children[0].pid})")
        return True

    def end_outage(self) -> None:
        if self.outage_flag.exists():
            self.outage_flag.unlink()
            self.outages += 1
            self.say(f"{self.elapsed():6.0f} s  sink outage ends")

    def sample(self, worker: subprocess.Popen) -> None:
        try:
            rss, child = worker_memory(worker.pid)
        except psutil.Error:
            return  # a process ended between listing and reading it; the next sample will do
        try:
            lag, stored = group_progress(self.run, self.start)
        except KafkaError:
            lag = stored = None
        self.samples.append(Sample(round(self.elapsed(), 2), round(rss, 1), child, lag, stored, self.phase,
                                   self.outage_flag.exists()))

    # -- phases -----------------------------------------------------------------------------------
    def produce(self) -> tuple[int, dict]:
        start = event_time_start(datetime.now(timezone.utc), self.options.duration_s)
        options = SimulationOptions(seed=self.options.seed, rate=self.options.rate, start=start,
                                    faults=self.options.faults, demo_key=True)
        generator = build_generator(options, self.settings)
        producer = make_producer(self.settings.kafka_bootstrap, **self.run.security)
        try:
            counts = produce(generator.events(None), producer, self.run.topics.streams, rate=self.options.rate,
                             deadline=time.monotonic() + self.options.duration_s, on_event=self.accepted.add)
        finally:
            producer.close(timeout=30)
        return sum(counts.values()), generator.faults.summary()["injected"]

    def drain(self) -> int | None:
        """Wait (bounded) until the group has committed everything sent; the lag left afterwards."""
        self.end_outage()
        bootstrap, security = self.settings.kafka_bootstrap, self.run.security
        try:
            wait_for_group(bootstrap, self.run.group, end_offsets(bootstrap, self.run.topics.inputs, security),
                           timeout_s=self.options.drain_timeout_s, security=security)
        except TimeoutError as error:
            self.say(str(error))
        try:
            return group_progress(self.run, self.start)[0]
        except KafkaError:
            return None

    def restarts(self) -> int:
        return max(0, len({s.child_pid for s in self.samples if s.child_pid is not None}) - 1)

    def stored_dead_letters(self) -> Counter:
        warehouse = open_run_store(self.run.chdb_url)
        try:
            with warehouse.lease() as client:
                rows = client.query(f"SELECT reason, count() FROM {warehouse.database}.dead_letters FINAL "
                                    "GROUP BY reason").result_rows
        finally:
            warehouse.close()
        return Counter({reason: int(count) for reason, count in rows})


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM to `pulse soak` cleans up like Ctrl-C


def check_faults(spec: str) -> None:
    unpredicted = set(parse_faults(spec)) - PREDICTED_FAULTS
    if unpredicted:
        raise PulseUsageError(f"pulse soak cannot predict the outcome of {', '.join(sorted(unpredicted))}; "
                         f"use {', '.join(sorted(PREDICTED_FAULTS))}")


def run(settings: Settings, options: SoakOptions, say: Callable[[str], None] = print) -> dict:
    check_faults(options.faults)
    soak = Soak(settings, options, say)
    plan = fault_plan(options.duration_s, options.kill_every_s, options.outage_every_s, options.outage_s)
    say(f"soak: {options.minutes:g} min at {options.rate:,.0f} events/s, faults {options.faults}; "
        f"{sum(a == 'kill' for _, a in plan)} kills, {sum(a == 'outage-start' for _, a in plan)} sink outages; "
        f"group {soak.run.group}, topics {soak.run.prefix}* (deleted afterwards)")
    soak.run.create_topics()
    try:
        return _run(soak, options, plan)
    finally:
        soak.run.delete_topics()


def _run(soak: Soak, options: SoakOptions, plan: list[tuple[float, str]]) -> dict:
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    worker = soak.start_worker()
    operator = threading.Thread(target=soak.operate, args=(worker, plan), name="soak-operator", daemon=True)
    operator.start()
    try:
        events, injected = soak.produce()
        soak.say(f"{soak.elapsed():6.0f} s  load stopped after {events:,} events; draining")
        end_lag = soak.drain()
    finally:
        soak.done.set()
        operator.join(timeout=30)
        soak.end_outage()
        alive_at_end = worker.poll() is None
        stopped_cleanly = stop_process(worker, STOP_TIMEOUT_S) == 0 and alive_at_end
        signal.signal(signal.SIGTERM, previous_handler)
    return soak_report(soak, options, events, injected, end_lag, stopped_cleanly)


def soak_report(soak: Soak, options: SoakOptions, events: int, injected: dict, end_lag: int | None,
                stopped_cleanly: bool) -> dict:
    totals_ok, _ = soak.run.totals_match()
    dead_letters = soak.stored_dead_letters()
    correct = totals_ok and dead_letters == soak.accepted.dead_letters
    restarts = soak.restarts()
    limits = Limits(options.max_rss_growth_pct, options.lag_limit)
    verdict = judge(soak.samples, warmup_s=options.settle_s, limits=limits, end_lag=end_lag, correct=correct,
                    kills=soak.kills, restarts=restarts, stopped_cleanly=stopped_cleanly)
    if soak.operator_error is not None:
        verdict.passed = False
        verdict.reasons.append(f"operator: {soak.operator_error!r}")
    steady = settled(soak.samples, options.settle_s) or soak.samples
    report = {
        "minutes": options.minutes, "rate": options.rate, "events": events, "accepted": soak.accepted.count,
        "rss_start_mb": steady[0].rss_mb if steady else None, "rss_end_mb": steady[-1].rss_mb if steady else None,
        "rss_slope_mb_per_min": _rounded(verdict.rss_slope_mb_per_min, 2),
        "rss_growth_pct": _rounded(verdict.rss_growth_pct, 2),
        "rss_observed_min": round(verdict.rss_observed_min, 2), "max_lag": verdict.max_lag, "end_lag": end_lag,
        "kills": soak.kills, "restarts": restarts, "outages": soak.outages, "samples": len(soak.samples),
        "faults": injected, "dead_letters_expected": dict(soak.accepted.dead_letters),
        "dead_letters_found": dict(dead_letters), "correct": correct, "passed": verdict.passed,
        "reasons": verdict.reasons, "state": None,
    }
    samples_file = soak.run.state / "samples.jsonl"  # for a closer look at a failed run
    samples_file.write_bytes(b"".join(orjson.dumps(sample.__dict__) + b"\n" for sample in soak.samples))
    if verdict.passed and not options.keep:
        shutil.rmtree(soak.run.state, ignore_errors=True)
    else:
        report["state"] = str(soak.run.state)  # kept after a failure: the worker log is there
    return report


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def summary_table(report: dict):  # rich.table.Table, imported only for the CLI
    from rich.table import Table

    table = Table("measure", "value", title="pulse soak: " + ("[green]passed[/]" if report["passed"]
                                                               else "[red]failed[/]"))
    for name, value in report.items():
        if name == "reasons":
            value = "; ".join(value) or "-"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = f"{value:,}"
        table.add_row(name, str(value))
    return table
