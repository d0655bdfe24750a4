"""`pulse simulate`: build the generator from flags and send its events to a file or to Kafka."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from prometheus_client import Counter, start_http_server

from pulse.kafka_security import check_kafka_access, kafka_options
from pulse.parsing import parse_time
from pulse.settings import DEMO_PII_KEY, Settings
from simulators import scenario as scenarios
from simulators.faults import FaultPlan, parse_faults
from simulators.generate import MIN_INTENSITY, Emitted, Generator
from simulators.output import make_producer, produce, write_jsonl

# With --seed and no --start, event time begins at a fixed Monday so the output is reproducible.
REPRODUCIBLE_START = datetime(2026, 1, 5, 0, 0, tzinfo=timezone.utc)

PRODUCED = Counter("pulse_simulator_events_produced_total", "Events produced", ["stream"])
FAULTS = Counter("pulse_simulator_faults_injected_total", "Faults injected", ["kind"])


@dataclass
class SimulationOptions:
    scenario: str = "default"
    seed: int | None = None
    events: int | None = None
    duration_s: float | None = None
    rate: float = 500.0
    start: datetime | None = None
    speed: float = 1.0
    faults: str | None = None
    out: Path | None = None
    metrics_port: int | None = None
    demo_key: bool = False


def event_time_start(now: datetime, duration_s: float, behind_s: float = 0.0) -> datetime:
    """Where a live run's event clock starts so that none of its events is stamped in the future.

    The generator follows the scenario's day profile at a steady sending rate, so in quiet hours (night in
    Vietnam) it covers up to 1/MIN_INTENSITY seconds of event time per second of sending. A clock started at
    "now" runs ahead of the wall clock within minutes, and the worker dead-letters those events as
    `future_time` (a fifth of a `pulse bench` at 01:25 ICT). Starting that far back keeps every event in the
    past at any hour; lag and freshness are measured on Kafka timestamps, not on event time."""
    return now - timedelta(seconds=behind_s + duration_s / MIN_INTENSITY)


def build_generator(options: SimulationOptions, settings: Settings) -> Generator:
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
    start = options.start or (REPRODUCIBLE_START if options.seed is not None else datetime.now(timezone.utc))
    key = DEMO_PII_KEY.encode() if options.demo_key and settings.pii_key is None else settings.require_pii_key()
    plan = FaultPlan(parse_faults(options.faults), options.events, random.Random(seed ^ 0xFA17))
    return Generator(scenarios.load(options.scenario), seed=seed, start=start, rate=options.rate,
                     speed=options.speed, pii_key=key, faults=plan)


def run(options: SimulationOptions, settings: Settings) -> dict[str, object]:
    generator = build_generator(options, settings)
    events = generator.events(options.events)

    def count(emitted: Emitted) -> None:
        PRODUCED.labels(emitted.stream).inc()

    started = time.monotonic()
    if options.out:
        counts = write_jsonl(events, options.out)
    else:
        if options.metrics_port:
            start_http_server(options.metrics_port, addr=settings.metrics_host)
        deadline = started + options.duration_s if options.duration_s else None
        # kafka-python would wait out its bootstrap timeout on refused credentials, then say only
        # "unable to bootstrap"; the check fails at once and names the user and mechanism.
        check_kafka_access(settings)
        producer = make_producer(settings.kafka_bootstrap, **kafka_options(settings))
        try:
            counts = produce(events, producer, settings.topics.streams, rate=options.rate, deadline=deadline,
                             on_event=count, event_clock=lambda: generator.clock)
        finally:
            producer.close(timeout=30)
    summary = generator.faults.summary()
    for kind, injected in summary["injected"].items():  # type: ignore[union-attr]
        FAULTS.labels(kind).inc(injected)
    elapsed = time.monotonic() - started
    return {"events": dict(counts), "total": sum(counts.values()), "seconds": round(elapsed, 2), "faults": summary}


def parse_start(text: str | None) -> datetime | None:
    """`--start`: an ISO 8601 time with a UTC offset, or `now`; None when not given."""
    return None if text is None else parse_time(text, allow_now=True)
