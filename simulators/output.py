"""Where generated events go: a JSONL file, or Kafka topics through kafka-python, paced in wall time."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from schemas.errors import PulseError
from simulators.generate import Emitted


def write_jsonl(events: Iterable[Emitted], path: Path, on_event: Callable[[Emitted], None] | None = None) -> Counter:
    counts: Counter = Counter()
    with path.open("wb") as out:
        for emitted in events:
            out.write(emitted.value + b"\n")
            counts[emitted.stream] += 1
            if on_event:
                on_event(emitted)
    return counts


class Pacer:
    """Holds a steady wall-clock rate: the n-th event is due at start + n / rate.

    After a stall (a slow broker, a long GC pause) the schedule keeps at most MAX_BACKLOG_S of lost time to
    catch up on, so the rate over any minute stays within a few percent instead of bursting to repay it all.
    """

    MAX_BACKLOG_S = 1.0
    MIN_SLEEP_S = 0.002  # sleep in slices; per-event sleeps below timer resolution only cost CPU

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._clock, self._sleep = clock, sleep
        self.started = clock()
        self.sent = 0

    def wait(self) -> None:
        self.sent += 1
        if self.interval:
            ahead = self.started + self.sent * self.interval - self._clock()
            if ahead > self.MIN_SLEEP_S:
                self._sleep(ahead)
            elif ahead < -self.MAX_BACKLOG_S:
                self.started += -ahead - self.MAX_BACKLOG_S


FLUSH_TIMEOUT_S = 60


class DeliveryFailed(PulseError, RuntimeError):
    """Kafka did not acknowledge some messages (brokers down, too few in-sync replicas): they may be missing."""


def make_producer(bootstrap: str, **options: object) -> KafkaProducer:
    """`options`: security options, or others that override these defaults (timeouts, for instance).

    acks=all: a message counts as sent only once every in-sync replica has it (with the cluster's
    min.insync.replicas=2, at least two brokers). Idempotence: a retry after a lost acknowledgement does not
    write the message twice, and messages of a partition stay in order."""
    return KafkaProducer(**{
        "bootstrap_servers": bootstrap, "acks": "all", "enable_idempotence": True, "linger_ms": 20,
        "batch_size": 256 * 1024, "max_request_size": 4 * 1024 * 1024, **options,
    })


def hold_until_present(event_clock: Callable[[], float], deadline: float | None, *,
                       wall: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait while the generator's event time is ahead of the wall clock (never past `deadline`, monotonic).

    A steady event rate makes event time race ahead in quiet hours (few events cover a long night), and a
    live worker dead-letters anything stamped beyond its future bound as `future_time`: a live producer
    therefore never sends an event stamped after now. Injected `clock_skew` faults are stamped after this
    check, from the un-skewed time, so they still go out as the skewed events they are meant to be."""
    while (ahead := event_clock() - wall()) > 0:
        if deadline is not None:
            ahead = min(ahead, deadline - time.monotonic())
            if ahead <= 0:
                return
        sleep(min(ahead, 1.0))


def produce(events: Iterable[Emitted], producer: KafkaProducer, topics: dict[str, str], *,
            rate: float | None, deadline: float | None = None,
            on_event: Callable[[Emitted], None] | None = None,
            event_clock: Callable[[], float] | None = None) -> Counter:
    """Send `events`, `rate` per second at most; with `event_clock` (the generator's un-faulted event time),
    none before the wall clock has reached it. Raises DeliveryFailed if Kafka did not acknowledge them all."""
    pacer = Pacer(rate)
    counts: Counter = Counter()
    refused: list[Exception] = []
    for emitted in events:
        if event_clock is not None:
            hold_until_present(event_clock, deadline)
        if deadline is not None and time.monotonic() >= deadline:
            break
        try:
            sent = producer.send(topics[emitted.stream], key=emitted.key, value=emitted.value)
        except KafkaTimeoutError as error:  # no partition metadata (no reachable broker) within max_block_ms
            raise DeliveryFailed(f"Kafka did not acknowledge all of {sum(counts.values()) + 1} messages: it took "
                                 f"no more ({error})") from None
        sent.add_errback(refused.append)
        counts[emitted.stream] += 1
        if on_event:
            on_event(emitted)
        pacer.wait()
    try:
        producer.flush(timeout=FLUSH_TIMEOUT_S)
    except KafkaTimeoutError as error:
        raise DeliveryFailed(f"Kafka did not acknowledge all of {sum(counts.values())} messages within "
                             f"{FLUSH_TIMEOUT_S} s ({error})") from None
    if refused:
        raise DeliveryFailed(f"Kafka did not acknowledge {len(refused)} of {sum(counts.values())} messages "
                             f"(first error: {refused[0]!r})")
    return counts
