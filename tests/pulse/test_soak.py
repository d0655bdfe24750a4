"""`pulse soak`: a one-minute run against the real broker must pass through a kill and an outage, and
the verdict behind it must fail on growing memory, runaway lag or a wrong store."""
from __future__ import annotations

import json
import random
from collections import Counter, defaultdict

from pulse.settings import Settings
from pulse.simulate import SimulationOptions, build_generator
from pulse.soak import AcceptedEvents, Limits, Sample, fault_plan, judge
from tests.support.services import PulseEnv

LIMITS = Limits(max_rss_growth_pct=10.0, max_lag=100_000)


def test_one_minute_soak_passes_through_kill_and_outage(pulse_env: PulseEnv) -> None:
    result = pulse_env.pulse("soak", "--minutes", "1", "--rate", "1000", "--sample-s", "1", "--warmup-s", "5",
                             "--seed", "5", timeout=480, check=False)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["passed"], f"{report['reasons']}\n{result.stderr[-3000:]}"
    assert result.returncode == 0
    assert report["correct"] is True
    assert report["events"] > 0
    assert report["restarts"] >= 1 and report["kills"] >= 1
    assert report["outages"] >= 1
    assert report["dead_letters_found"]["too_late"] == report["faults"]["too_late"] > 0
    assert report["end_lag"] == 0


def worker_lives(slope_mb_per_min: float, *, minutes: float = 30, restart_every_min: float = 5,
                 seed: int = 1) -> list[Sample]:
    """Samples every 5 s from a worker restarted now and then: each life starts low (a fresh process), then
    runs around 600 MB with noise, plus `slope` MB per minute of growth since the soak began."""
    rng = random.Random(seed)
    samples, stored = [], 0
    for step in range(int(minutes * 12)):
        at_s = step * 5.0
        life = int(at_s // (restart_every_min * 60))
        age_s = at_s - life * restart_every_min * 60
        stored += 5000
        rss = (130.0 if age_s < 15 else 600.0) + rng.gauss(0, 8) + slope_mb_per_min * at_s / 60
        samples.append(Sample(at_s, rss, 1000 + life, lag=rng.randint(0, 5000), stored=stored, phase=life))
    return samples


def with_outage(samples: list[Sample], first: int, last: int, step_mb: float) -> list[Sample]:
    """A sink outage over samples[first:last]: nothing stored, and memory a level higher afterwards."""
    for index, sample in enumerate(samples[first:], start=first):
        sample.phase += 1 if index < last else 2
        sample.in_outage = index < last
        sample.rss_mb += step_mb
        sample.stored = samples[first - 1].stored + 5000 * max(0, index - last)
    return samples


def verdict_of(samples: list[Sample], **overrides: object):
    arguments = {"warmup_s": 20.0, "limits": LIMITS, "end_lag": 0, "correct": True, "kills": 5, "restarts": 5}
    return judge(samples, **{**arguments, **overrides})


def test_flat_memory_passes_despite_restarts() -> None:
    verdict = verdict_of(worker_lives(0.0))
    assert verdict.passed, verdict.reasons
    assert abs(verdict.rss_slope_mb_per_min) < 1.0


def test_growing_memory_fails_even_when_restarts_reset_it() -> None:
    # 4 MB/min is ~110 MB (18 %) over the ~27 quiet minutes; restarts every 5 minutes hide it from one fit.
    verdict = verdict_of(worker_lives(4.0))
    assert not verdict.passed
    assert verdict.reasons and verdict.reasons[0].startswith("memory")
    assert 3.0 < verdict.rss_slope_mb_per_min < 5.0


def test_a_level_step_at_an_outage_is_not_growth() -> None:
    verdict = verdict_of(with_outage(worker_lives(0.0, restart_every_min=60), 100, 110, step_mb=60.0))
    assert verdict.passed, verdict.reasons


def test_too_few_settled_samples_cannot_pass() -> None:
    verdict = verdict_of(worker_lives(0.0, minutes=0.5), warmup_s=60.0)
    assert not verdict.passed and verdict.rss_slope_mb_per_min is None


def test_lag_wrong_store_and_lost_restarts_fail() -> None:
    flat = worker_lives(0.0)
    flat[100].lag = LIMITS.max_lag + 1
    assert not verdict_of(flat).passed
    assert not verdict_of(worker_lives(0.0), end_lag=10).passed
    assert not verdict_of(worker_lives(0.0), correct=False).passed
    assert not verdict_of(worker_lives(0.0), kills=6).passed


def test_fault_plan_has_every_fault_and_leaves_the_end_quiet() -> None:
    for minutes in (0.5, 1, 3, 30):
        plan = fault_plan(minutes * 60, kill_every_s=300, outage_every_s=600, outage_s=15)
        actions = [action for _, action in plan]
        assert actions.count("kill") >= 1 and actions.count("outage-start") == actions.count("outage-end") >= 1
        assert max(at for at, _ in plan) <= 0.75 * minutes * 60


def test_accepted_events_predict_what_the_simulator_injected() -> None:
    options = SimulationOptions(seed=3, rate=2000, events=30_000, demo_key=True,
                                faults="duplicate=0.02,late=0.02,out_of_order=0.01,too_late=0.01,malformed=0.01")
    generator = build_generator(options, Settings(pii_key=None))
    accepted = AcceptedEvents(defaultdict(Counter), lateness_s=600.0)
    sent = 0
    for emitted in generator.events(options.events):
        accepted.add(emitted)
        sent += 1
    injected = generator.faults.summary()["injected"]
    assert all(injected.values()), injected
    assert sent == options.events + injected["duplicate"]  # a duplicate is an extra copy
    assert accepted.dead_letters == {"too_late": injected["too_late"], "malformed_json": injected["malformed"]}
    assert accepted.count == options.events - injected["too_late"] - injected["malformed"]


def test_accepted_events_predict_clock_skew_and_conflicting_duplicates() -> None:
    options = SimulationOptions(seed=5, rate=2000, events=20_000, demo_key=True,
                                faults="duplicate=0.01,clock_skew=0.005,conflicting_duplicate=0.01")
    generator = build_generator(options, Settings(pii_key=None))
    accepted = AcceptedEvents(defaultdict(Counter), lateness_s=600.0, max_future_s=300.0)
    for emitted in generator.events(options.events):
        accepted.add(emitted)
    summary = generator.faults.summary()
    injected = summary["injected"]
    assert all(injected.values()), injected
    assert accepted.dead_letters == {"future_time": injected["clock_skew"],
                                     "conflicting_duplicate": injected["conflicting_duplicate"]}
    assert sum(accepted.dead_letters.values()) == summary["expected_dead_letters"]
    assert accepted.count == options.events - injected["clock_skew"]
