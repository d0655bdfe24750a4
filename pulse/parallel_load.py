"""A steady load from several producer processes, with an exact window truth (`python -m pulse.scale_run`).

One Python process that generates events and sends them with kafka-python reached about 2,900-4,100
events/s here, on two cores shared with three brokers and the workers. `parallel_produce` splits the load
over N spawned processes. Each has its own generator with its own seed (base seed + its index), so no two
slices share an event, and its rate is rate/N with event times from the same start: together one calibrated
stream at the full rate. Each process generates its whole slice (and the slice's window truth) *before* the
common start, so that while the clock runs it only sends pre-built bytes (about 60 us of CPU a message
instead of about 90 with generation and truth). A slice sends all it generated, so the truth is exactly what
was sent; a machine too busy to keep the pace makes the run longer, and the reported rate lower, instead of
dropping events. The parent adds the slices' truths up and checks that no event id is in two slices.
"""
from __future__ import annotations

import multiprocessing
import random
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pulse.bench import WindowTruth
from pulse.settings import Settings
from pulse.simulate import SimulationOptions, build_generator, event_time_start
from simulators.output import Pacer, make_producer

PER_PRODUCER_RATE = 1000.0  # events/s one process is asked for by default: well below what one can send
READY_TIMEOUT_S = 600.0  # generating a ten-minute slice takes well under a minute


class CatchUpPacer(Pacer):
    """The offered rate over the whole run is what counts here: a slice repays up to 5 s lost to a stall (a
    busy machine) instead of the stock 1 s."""

    MAX_BACKLOG_S = 5.0


@dataclass(frozen=True)
class Slice:
    """One producer process's share of the load."""

    index: int
    seed: int
    rate: float
    events: int
    start: datetime  # event time of the first event (every slice starts its clock there)
    settings: Settings
    topics: dict[str, str]  # stream -> topic
    security: dict[str, object]


@dataclass
class SliceResult:
    index: int
    sent: int
    began_at: float  # wall clock when this slice began sending (after generating)
    seconds: float  # from the common start to this slice's last send
    rows: dict[tuple[str, int, str], Counter]
    dead_letters: Counter
    ids: array  # the first 64 bits of each counted event id, to prove the slices disjoint


@dataclass
class LoadResult:
    sent: int
    began_at: float  # wall clock when sending began (the slices generate first)
    seconds: float
    truth: WindowTruth
    per_producer: list[dict[str, float]]


def default_producers(rate: float) -> int:
    return max(1, int(-(-rate // PER_PRODUCER_RATE)))


def _id_prefix(event_id: str) -> int:
    return int(event_id.replace("-", "")[:16], 16)


class Messages:
    """Pre-built messages packed in one buffer. A list of small bytes objects kept while the generator makes
    and drops its own temporaries took about 5 KB of memory per 400-byte message here (each kept object
    pins an allocator pool of freed ones); packed, a message costs its bytes and three offsets."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics
        self.blob = bytearray()
        self.topic = array("B")
        self.ends = array("Q")  # per message: end of its key, end of its value (the key starts at the last end)

    def append(self, topic: int, key: bytes, value: bytes) -> None:
        self.topic.append(topic)
        self.blob += key
        self.ends.append(len(self.blob))
        self.blob += value
        self.ends.append(len(self.blob))

    def __len__(self) -> int:
        return len(self.topic)

    def __iter__(self) -> Iterator[tuple[str, bytes, bytes]]:
        view, ends, start = memoryview(self.blob), self.ends, 0
        for index, topic in enumerate(self.topic):
            key_end, end = ends[2 * index], ends[2 * index + 1]
            yield self.topics[topic], bytes(view[start:key_end]), bytes(view[key_end:end])
            start = end


def _generate(job: Slice) -> tuple[Messages, WindowTruth, array]:
    options = SimulationOptions(seed=job.seed, events=job.events, rate=job.rate, start=job.start, speed=1.0,
                                demo_key=True)
    topics = sorted(set(job.topics.values()))
    number = {stream: topics.index(topic) for stream, topic in job.topics.items()}
    truth, ids, messages = WindowTruth(), array("Q"), Messages(topics)
    for emitted in build_generator(options, job.settings).events(job.events):
        event = truth.add(emitted.value)
        if event is not None:
            ids.append(_id_prefix(event["event_id"]))
        messages.append(number[emitted.stream], emitted.key, emitted.value)
    return messages, truth, ids


def produce_slice(job: Slice, ready: Any) -> SliceResult:
    """Runs in a producer process: generate the slice, wait for the others, send it at the slice's rate."""
    messages, truth, ids = _generate(job)
    truth.seen.clear()  # only needed while adding; the ids prove the slices disjoint
    producer = make_producer(job.settings.kafka_bootstrap, **job.security)
    for topic in set(job.topics.values()):
        producer.partitions_for(topic)  # metadata now, not in the first paced second
    ready.wait(READY_TIMEOUT_S)
    began, began_at, pacer = time.monotonic(), time.time(), CatchUpPacer(job.rate)
    for topic, key, value in messages:
        producer.send(topic, key=key, value=value)
        pacer.wait()
    seconds = time.monotonic() - began
    producer.flush(timeout=120)
    producer.close(timeout=30)
    return SliceResult(job.index, len(messages), began_at, seconds, dict(truth.rows), truth.dead_letters, ids)


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
    """Send rate x duration_s events at `rate` events/s from `producers` processes (spawned: the caller has
    threads), event times starting as `event_time_start` says."""
    base = seed if seed is not None else random.SystemRandom().randrange(2**31)
    start = event_time_start(datetime.now(timezone.utc), duration_s, start_behind_s)
    total = round(rate * duration_s)
    shares = [total // producers + (1 if index < total % producers else 0) for index in range(producers)]
    jobs = [Slice(index, base + index, rate / producers, shares[index], start, settings, topics, security)
            for index in range(producers)]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(producers, mp_context=context) as pool:
        ready = manager.Barrier(producers)
        results = list(pool.map(produce_slice, jobs, [ready] * producers))
    return LoadResult(
        sent=sum(result.sent for result in results),
        began_at=min(result.began_at for result in results),
        seconds=max(result.seconds for result in results),
        truth=merge(results),
        per_producer=[{"sent": result.sent, "events_per_s": round(result.sent / result.seconds, 1)}
                      for result in results],
    )
