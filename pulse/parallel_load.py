"""A steady load from several producer processes, with an exact window truth (`python -m pulse.scale_run`).

One kafka-python producer in one process sends about 3,000-4,000 events/s here, whatever the brokers can
take: each `send()` costs Python time. `parallel_produce` splits the rate over N spawned processes. Each has
its own generator with its own seed (base seed + its index), so the slices never share an event, and sends
rate/N events per second with event times from the same start: together they are one calibrated stream at
the full rate, event time = now. Each process computes the window truth of what it sent; the parent adds
the slices up and checks that no event id was sent by two slices (the sum is exact only then).
"""
from __future__ import annotations

import multiprocessing
import random
import time
from array import array
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from pulse.bench import WindowTruth
from pulse.settings import Settings
from pulse.simulate import SimulationOptions, build_generator
from simulators.output import Pacer, make_producer

START_MARGIN_S = 5.0  # time the spawned processes get to import and connect before the common start
PER_PRODUCER_RATE = 1000.0  # events/s one process is asked for by default: well below what one can send


@dataclass(frozen=True)
class Slice:
    """One producer process's share of the load."""

    index: int
    seed: int
    rate: float
    start: datetime  # event time of the first event (every slice starts its clock there)
    begin_at: float  # wall clock (time.time()) at which every slice starts sending
    duration_s: float
    settings: Settings
    topics: dict[str, str]  # stream -> topic
    security: dict[str, object]


@dataclass
class SliceResult:
    index: int
    sent: int
    seconds: float  # from the common start to this slice's last send
    rows: dict[tuple[str, int, str], Counter]
    dead_letters: Counter
    ids: array  # the first 64 bits of each counted event id, to prove the slices disjoint


@dataclass
class LoadResult:
    sent: int
    seconds: float
    truth: WindowTruth
    per_producer: list[dict[str, float]]


def default_producers(rate: float) -> int:
    return max(1, int(-(-rate // PER_PRODUCER_RATE)))


def _id_prefix(event_id: str) -> int:
    return int(event_id.replace("-", "")[:16], 16)


def produce_slice(job: Slice) -> SliceResult:
    """Runs in a producer process: send this slice's events for the duration, at its rate."""
    options = SimulationOptions(seed=job.seed, events=None, rate=job.rate, start=job.start, speed=1.0, demo_key=True)
    generator = build_generator(options, job.settings)
    producer = make_producer(job.settings.kafka_bootstrap, **job.security)
    truth = WindowTruth()
    ids = array("Q")
    sent = 0
    time.sleep(max(0.0, job.begin_at - time.time()))
    began = time.monotonic()
    deadline, pacer = began + job.duration_s, Pacer(job.rate)
    for emitted in generator.events(None):
        if time.monotonic() > deadline:
            break
        event = truth.add(emitted.value)
        if event is not None:
            ids.append(_id_prefix(event["event_id"]))
        producer.send(job.topics[emitted.stream], key=emitted.key, value=emitted.value)
        sent += 1
        pacer.wait()
    seconds = time.monotonic() - began
    producer.flush(timeout=120)
    producer.close(timeout=30)
    return SliceResult(job.index, sent, seconds, dict(truth.rows), truth.dead_letters, ids)


def merge(results: list[SliceResult]) -> WindowTruth:
    """The window truth of all slices together; refuses slices that share an event (the sum would be wrong)."""
    total = sum(len(result.ids) for result in results)
    distinct = len({prefix for result in results for prefix in result.ids})
    if distinct != total:
        raise RuntimeError(f"producer slices share {total - distinct} event ids: the window truth is not exact")
    rows: dict[tuple[str, int, str], Counter] = defaultdict(Counter)
    truth = WindowTruth(rows=rows)
    for result in results:
        for key, measures in result.rows.items():
            rows[key].update(measures)
        truth.dead_letters.update(result.dead_letters)
    truth.counted = total
    return truth


def parallel_produce(settings: Settings, topics: dict[str, str], security: dict[str, object], *, rate: float,
                     duration_s: float, producers: int, start_behind_s: float = 0.0,
                     seed: int | None = None) -> LoadResult:
    """Send `rate` events/s for `duration_s` from `producers` processes (spawned: the caller has threads), the
    first event stamped `start_behind_s` before the moment sending begins."""
    base = seed if seed is not None else random.SystemRandom().randrange(2**31)
    begin_at = time.time() + START_MARGIN_S
    start = datetime.fromtimestamp(begin_at - start_behind_s, timezone.utc)
    jobs = [Slice(index, base + index, rate / producers, start, begin_at, duration_s, settings, topics, security)
            for index in range(producers)]
    with ProcessPoolExecutor(producers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(produce_slice, jobs))
    return LoadResult(
        sent=sum(result.sent for result in results),
        seconds=max(result.seconds for result in results),
        truth=merge(results),
        per_producer=[{"sent": result.sent, "events_per_s": round(result.sent / result.seconds, 1)}
                      for result in results],
    )
