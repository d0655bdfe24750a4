"""Fault injection with exact, seeded counts.

Each kind selects exactly round(fraction * N) of the N generated events with selection sampling
(Knuth's algorithm S), so the counts are known in advance and a test can predict the dead letters.
An event carries at most one fault; a kind whose pick falls on an ineligible or already-faulted event
carries the pick over to the next one.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

KINDS = ("duplicate", "late", "out_of_order", "too_late", "malformed", "unknown_province", "bad_qr",
         "clock_skew", "conflicting_duplicate")
# Faults that make the worker reject the event (dead letter); the others it must absorb. A
# conflicting_duplicate event is sent as generated and once more, re-stamped, later: that copy is rejected.
REJECTED_KINDS = ("too_late", "malformed", "unknown_province", "bad_qr", "clock_skew", "conflicting_duplicate")
# Faults whose event is sent again later (within 50 events), as it is or changed.
RESENT_KINDS = ("duplicate", "conflicting_duplicate")
# Event-time shifts (seconds back) per kind: `late` stays within the default 10-minute allowed
# lateness, `too_late` is far beyond it, `out_of_order` only swaps neighbours.
SHIFTS = {"late": (60.0, 300.0), "out_of_order": (1.0, 20.0), "too_late": (1800.0, 7200.0)}
# clock_skew: a terminal whose clock is set years ahead (seconds forward). Beyond any worker's clock, also
# when an old file is replayed, so it is always `future_time`; a clock minutes fast is absorbed instead.
CLOCK_SKEW_S = (10 * 365 * 86400.0, 11 * 365 * 86400.0)
# conflicting_duplicate: a producer retry that re-stamps the event into a later minute (seconds forward).
RESTAMP_S = (60.0, 180.0)
WARMUP_EVENTS = 200  # no faults before every partition has a watermark


def parse_faults(spec: str | None) -> dict[str, float]:
    """`duplicate=0.01,late=0.02` -> {"duplicate": 0.01, "late": 0.02}."""
    fractions: dict[str, float] = {}
    for part in filter(None, (spec or "").split(",")):
        kind, _, value = part.partition("=")
        kind = kind.strip()
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
        fraction = float(value)
        if not 0.0 <= fraction <= 0.5:
            raise ValueError(f"fault fraction for {kind} must be within 0..0.5, got {fraction}")
        fractions[kind] = fraction
    return fractions


@dataclass
class FaultPlan:
    fractions: dict[str, float]
    total: int | None  # events to generate; None = open-ended (Bernoulli draws instead of exact counts)
    rng: random.Random
    injected: Counter = field(default_factory=Counter)
    _wanted: dict[str, int] = field(default_factory=dict)
    _carry: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.total is not None:
            eligible = max(0, self.total - WARMUP_EVENTS)
            self._wanted = {kind: round(fraction * eligible) for kind, fraction in self.fractions.items()}

    def pick(self, index: int, stream: str) -> str | None:
        """The fault for the index-th generated event (of the given stream), or None."""
        if index < WARMUP_EVENTS or not self.fractions:
            return None
        chosen = None
        for kind in self.fractions:
            if self._selected(kind, index):
                if chosen is None and (kind != "bad_qr" or stream == "payments"):
                    chosen = kind
                else:
                    self._carry[kind] += 1
        if chosen is None:
            for kind, owed in self._carry.items():
                if owed and (kind != "bad_qr" or stream == "payments"):
                    chosen = kind
                    self._carry[kind] -= 1
                    break
        if chosen:
            self.injected[chosen] += 1
        return chosen

    def _selected(self, kind: str, index: int) -> bool:
        if self.total is None:
            return self.rng.random() < self.fractions[kind]
        remaining_items = self.total - index
        needed = self._wanted[kind] - self.injected[kind] - self._carry[kind]
        return needed > 0 and self.rng.random() * remaining_items < needed

    def summary(self) -> dict[str, object]:
        return {
            "injected": {kind: self.injected.get(kind, 0) for kind in self.fractions},
            "expected_dead_letters": sum(self.injected.get(kind, 0) for kind in REJECTED_KINDS),
            "unplaced": sum(self._carry.values()),
        }
