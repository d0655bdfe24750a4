"""Simulator runs shared by the statistical tests: generated once per session, parsed once."""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache

import orjson
import pytest

from schemas.provinces import code_map
from simulators import scenario
from simulators.faults import FaultPlan, parse_faults
from simulators.generate import Emitted, Generator

VN = timezone(timedelta(hours=7))
START = datetime(2026, 1, 5, tzinfo=timezone.utc)  # Monday 07:00 in Vietnam
RATE = 1000.0
WEEK_S = 7 * 86400
# 100,000 events at RATE per wall second spread over four weeks of event time.
FOUR_WEEKS_SPEED = 4 * WEEK_S / (100_000 / RATE)


@dataclass
class Run:
    emitted: list[Emitted]
    generator: Generator
    events: list[dict] = field(default_factory=list)  # parsed, clean runs only

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(VN)


CURRENT = code_map()


def current(code: str) -> str:
    return CURRENT[code]


def generate(name: str | dict = "default", events: int = 5000, *, seed: int = 1, start: datetime = START,
             rate: float = RATE, speed: float = 60.0, faults: str = "", pii_key: bytes = b"test-key",
             parse: bool = True, only: bytes | None = None) -> Run:
    sc = scenario.load(name) if isinstance(name, str) else copy.deepcopy(name)
    plan = FaultPlan(parse_faults(faults), events, random.Random(seed ^ 0xFA17))
    generator = Generator(sc, seed=seed, start=start, rate=rate, speed=speed, pii_key=pii_key, faults=plan)
    emitted = list(generator.events(events))
    run = Run(emitted, generator)
    if parse:
        run.events = [orjson.loads(e.value) for e in emitted if only is None or only in e.value]
    return run


@cache
def _cached(name: str, events: int, speed: float, seed: int, only: bytes | None = None) -> Run:
    return generate(name, events, speed=speed, seed=seed, only=only)


@pytest.fixture(scope="session")
def default_run() -> Run:
    """The default world over four weeks (100k events)."""
    return _cached("default", 100_000, FOUR_WEEKS_SPEED, 1)


@pytest.fixture(scope="session")
def bac_lieu_run() -> Run:
    """bac-lieu-late-dossiers over about eight weeks (200k events), dossier events only."""
    return _cached("bac-lieu-late-dossiers", 200_000, FOUR_WEEKS_SPEED, 2, b'"type":"dossier"')


@pytest.fixture(scope="session")
def vneid_run() -> Run:
    return _cached("vneid-campaign", 60_000, FOUR_WEEKS_SPEED, 3)
