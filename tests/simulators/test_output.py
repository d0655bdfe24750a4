"""Output: the wall-clock pacer holds --rate, the JSONL writer writes what was generated."""
from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from simulators.output import Pacer, hold_until_present, produce, write_jsonl
from tests.simulators.conftest import generate

TOPICS = {"payments": "p", "dossiers": "d", "identity": "i"}


class FakeProducer:
    """An in-memory sink with kafka-python's send/flush, recording when each message was sent."""

    def __init__(self, stall_at: int | None = None, stall_s: float = 0.0) -> None:
        self.sent: list[tuple[float, str, bytes, bytes]] = []
        self.flushed = 0
        self.stall_at, self.stall_s = stall_at, stall_s

    def send(self, topic: str, key: bytes, value: bytes) -> FakeProducer:
        if len(self.sent) == self.stall_at:
            time.sleep(self.stall_s)
        self.sent.append((time.monotonic(), topic, key, value))
        return self  # stands in for the send's future: every message is acknowledged

    def add_errback(self, _callback) -> FakeProducer:
        return self

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1


def _endless():
    run = generate("default", 1, parse=False)
    return run.generator.events(None)


def test_produce_never_runs_ahead_of_the_rate() -> None:
    """Behaviour, not the machine's speed: the n-th message is never sent before its slot (start + n / rate),
    and no half second carries more than its share plus the catch-up the pacer allows after a stall. The exact
    schedule is pinned on a fake clock below; a busy machine can only make the real run send later, never
    sooner, so the lower bound is loose (a third of the asked rate)."""
    rate, seconds = 2000.0, 2.0
    sink = FakeProducer()
    events = _endless()
    started = time.monotonic()
    counts = produce(events, sink, TOPICS, rate=rate, deadline=started + seconds)
    times = [t for t, *_ in sink.sent]
    assert sum(counts.values()) == len(times)
    slack = Pacer.MIN_SLEEP_S + 0.001  # the pacer does not sleep for less than MIN_SLEEP_S
    early = [n for n, t in enumerate(times) if t - started < n / rate - slack]
    assert not early, f"{len(early)} messages sent before their slot (first: #{early[0]})"
    for half in range(4):  # every half second on its own
        low = started + half * 0.5
        inside = sum(low <= t < low + 0.5 for t in times)
        assert inside <= rate * (0.5 + Pacer.MAX_BACKLOG_S) + 1, half
    assert len(times) <= rate * (seconds + slack) + 2  # slot 0 is at the start, and the last may fall on the deadline
    assert len(times) >= rate * seconds / 3, "the pacer held back far more than asked"
    assert sink.flushed == 1
    assert {topic for _, topic, _, _ in sink.sent} == set(TOPICS.values())


def test_a_stall_is_not_repaid_with_a_burst() -> None:
    """Behaviour, not the machine's speed. After a 1.5 s stall the pacer catches up at most MAX_BACKLOG_S of
    it: every later message is sent no sooner than its slot moved back by the rest of the stall (0.5 s). A
    busy machine only ever sends later, so these bounds hold under load; the catch-up itself is bounded too."""
    rate, stall_at, stall_s = 1000.0, 200, 1.5
    sink = FakeProducer(stall_at=stall_at, stall_s=stall_s)
    events = _endless()
    started = time.monotonic()
    produce(events, sink, TOPICS, rate=rate, deadline=started + 3.5)
    times = [t for t, *_ in sink.sent]
    after = times[stall_at]
    assert after - started >= stall_at / rate + stall_s - 0.01, "the stall did not happen"
    # A message may leave MIN_SLEEP_S before its slot, and the slot that ends the stall is itself computed
    # from a send that may have left that early: twice that, and timer rounding. Repaying the stall would be
    # 500 ms early, far outside it.
    slack = 2 * Pacer.MIN_SLEEP_S + 0.005
    not_repaid = stall_s - Pacer.MAX_BACKLOG_S
    early = [n for n in range(stall_at + 1, len(times)) if times[n] - started < n / rate + not_repaid - slack]
    assert not early, f"{len(early)} messages repaid the whole stall (first: #{early[0]})"
    # Within a second of the stall at most the allowed backlog (1 s) plus a second's worth is sent (the
    # schedule above caps it whatever the load)...
    burst = sum(after <= t < after + 1.0 for t in times)
    assert burst <= rate * (1.0 + Pacer.MAX_BACKLOG_S) * 1.05
    # ... and sending goes on after it (a loose lower bound: a loaded machine only ever sends later).
    assert sum(t >= after + 1.2 for t in times) >= rate * 0.3


def test_pacer_schedule_on_a_fake_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(500.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(1000):
        pacer.wait()
    assert now[0] == pytest.approx(102.0, abs=0.003)  # 1,000 events at 500/s: two seconds
    now[0] += 10.0  # a 10 s stall
    sent_without_sleep = 0
    while True:
        before = len(slept)
        pacer.wait()
        if len(slept) > before:
            break
        sent_without_sleep += 1
    assert sent_without_sleep <= 500 * Pacer.MAX_BACKLOG_S + 1
    unpaced = Pacer(None, clock=lambda: now[0], sleep=sleep)
    before = len(slept)
    for _ in range(100):
        unpaced.wait()
    assert len(slept) == before


def test_write_jsonl_writes_every_emitted_line(tmp_path: Path) -> None:
    run = generate("default", 3000, parse=False, faults="duplicate=0.02,malformed=0.01")
    path = tmp_path / "out.jsonl"
    counts = write_jsonl(iter(run.emitted), path)
    lines = path.read_bytes().splitlines()
    assert lines == [e.value for e in run.emitted]
    assert counts == Counter(e.stream for e in run.emitted)


def test_hold_until_present_waits_for_the_wall_clock_to_reach_event_time() -> None:
    wall = [1_000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        wall[0] += seconds

    hold_until_present(lambda: 1_002.5, None, wall=lambda: wall[0], sleep=sleep)
    assert wall[0] >= 1_002.5
    assert slept == [1.0, 1.0, 0.5]  # in slices of at most a second, so a deadline is never overslept

    slept.clear()
    hold_until_present(lambda: 900.0, None, wall=lambda: wall[0], sleep=sleep)  # event time in the past
    assert slept == []


def test_a_live_night_never_produces_events_stamped_after_now() -> None:
    """At night the steady rate covers hours of event time in minutes; the producer waits instead."""
    night = datetime(2026, 3, 2, 16, 0, tzinfo=timezone.utc)  # 23:00 in Hanoi, a quiet hour
    run = generate("default", 0, parse=False, start=night)
    wall = [night.timestamp()]
    sink = FakeProducer()

    def sleep(seconds: float) -> None:
        wall[0] += seconds

    events = run.generator.events(400)
    held = (e for e in events if hold_until_present(lambda: run.generator.clock, None, wall=lambda: wall[0],
                                                    sleep=sleep) is None)
    for emitted in held:
        assert emitted.event_time <= wall[0] + 1e-3
        sink.send("t", key=emitted.key, value=emitted.value)
    assert len(sink.sent) == 400
    assert wall[0] > night.timestamp() + 60  # the night's 400 events really span more than a minute
