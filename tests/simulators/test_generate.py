"""Generator behaviour: determinism, valid events, fast paths equal to the library forms, exact faults."""
from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
from collections import Counter
from datetime import datetime, timezone
from uuid import UUID

import pytest

from schemas.events import EVENT_MODELS
from schemas.vietqr import decode, encode
from simulators import scenario
from simulators.faults import CLOCK_SKEW_S, RESTAMP_S, SHIFTS, WARMUP_EVENTS, FaultPlan, parse_faults
from simulators.generate import STREAM_OF_TYPE, Generator, _DynamicQR, _Stamps, iso
from tests.simulators.conftest import START, Run, generate

ALL = "duplicate=0.02,late=0.02,out_of_order=0.02,too_late=0.01,malformed=0.01,unknown_province=0.01,bad_qr=0.01"
E2E = "duplicate=0.02,late=0.03,out_of_order=0.02,too_late=0.01,malformed=0.01,unknown_province=0.01,bad_qr=0.01"


def test_same_seed_same_bytes_and_another_seed_differs() -> None:
    first = generate("default", 5000, seed=5, faults=ALL, parse=False)
    second = generate("default", 5000, seed=5, faults=ALL, parse=False)
    third = generate("default", 5000, seed=6, faults=ALL, parse=False)
    assert [e.value for e in first.emitted] == [e.value for e in second.emitted]
    assert [(e.key, e.stream, e.event_time) for e in first.emitted] == [
        (e.key, e.stream, e.event_time) for e in second.emitted]
    assert [e.value for e in first.emitted] != [e.value for e in third.emitted]


def test_same_seed_is_deterministic_over_long_lifecycles() -> None:
    speed = 20_000.0  # days of event time: lifecycles, bucket changes, campaigns all in play
    first = generate("vneid-campaign", 20_000, seed=9, speed=speed, parse=False)
    second = generate("vneid-campaign", 20_000, seed=9, speed=speed, parse=False)
    assert [e.value for e in first.emitted] == [e.value for e in second.emitted]


def test_the_pii_key_changes_only_citizen_refs() -> None:
    one = generate("default", 3000, pii_key=b"one")
    two = generate("default", 3000, pii_key=b"two")
    for a, b in zip(one.events, two.events):
        if a["type"] == "id_activation":
            assert a["citizen_ref"] != b["citizen_ref"]
            a, b = dict(a, citizen_ref=""), dict(b, citizen_ref="")
        assert a == b


def test_citizen_ref_is_hmac_sha256_of_a_plausible_number_that_never_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    import simulators.generate as module

    hashed: list[tuple[bytes, bytes]] = []

    class Spy:
        @staticmethod
        def digest(key: bytes, message: bytes, digest: str) -> bytes:
            hashed.append((key, message))
            return hmac.digest(key, message, digest)

    monkeypatch.setattr(module, "hmac", Spy)
    run = generate("vneid-campaign", 3000, pii_key=b"secret")
    activations = run.of("id_activation")
    assert len(hashed) == len(activations) > 300
    values = b"\n".join(e.value for e in run.emitted)
    for (key, number), event in zip(hashed, activations):
        assert key == b"secret"
        assert event["citizen_ref"] == hmac.new(b"secret", number, hashlib.sha256).hexdigest()
        assert re.fullmatch(rb"0\d{2}[0-3]\d{8}", number), number  # CCCD: birth province, century/sex, year
        assert number not in values
        born = (1900 if number[3] in b"01" else 2000) + int(number[4:6])
        band = event["age_band"]
        low, high = (60, 85) if band == "60+" else map(int, band.split("-"))
        assert low <= 2026 - born <= high, (band, number)


def test_every_clean_event_validates_and_its_qr_agrees() -> None:
    run = generate("default", 20_000, speed=20_000.0)
    ids = set()
    for item in run.emitted:
        event = EVENT_MODELS[item.stream].model_validate_json(item.value)
        assert item.stream == STREAM_OF_TYPE[json.loads(item.value)["type"]]
        ids.add(event.event_id)
        assert event.event_id.version == 4
        if item.stream == "payments":
            qr = decode(event.qr_payload)
            assert qr.bank_bin == event.payee_bank_bin
            assert qr.amount in (None, event.amount_vnd)
            assert (qr.amount is None) == (event.channel == "vietqr_static")
            assert qr.is_dynamic == (event.channel == "vietqr_dynamic")
            assert item.key == str(event.event_id).encode()
        elif item.stream == "dossiers":
            assert item.key == event.dossier_id.encode()
        assert item.event_time == pytest.approx(event.event_time.timestamp(), abs=1e-6)
    assert len(ids) == len(run.emitted)


def test_fast_dynamic_qr_equals_the_codec() -> None:
    rng = random.Random(3)
    run = generate("default", 1, parse=False)
    merchants = [m for ms in run.generator.world.merchants.values() for m in ms]
    for merchant in rng.sample(merchants, 200):
        template = _DynamicQR(merchant.bank_bin, merchant.account)
        for amount in (1000, 45_000, 999_000, rng.randrange(1, 10**12), rng.randrange(1000, 10**7)):
            assert template.payload(amount) == encode(merchant.bank_bin, merchant.account, amount=amount)


def test_fast_uuid_and_timestamps_equal_the_library_forms() -> None:
    run = generate("default", 1, parse=False)
    generator = run.generator
    for _ in range(2000):
        state = generator.rng.getstate()
        fast = generator._uuid()
        generator.rng.setstate(state)
        assert fast == str(UUID(int=generator.rng.getrandbits(128), version=4))
    stamps = _Stamps()
    rng = random.Random(4)
    base = int(START.timestamp() * 1000)
    moments = sorted(base + rng.randrange(0, 400 * 86400 * 1000) for _ in range(3000))
    moments += [base, base + 999, base + 1000, 1767225599999, 1767225600000]  # new year's midnight, local
    for ms in moments:
        assert stamps(ms) == iso(ms / 1000) == stamps.other(ms), ms
        assert datetime.fromisoformat(stamps(ms)).timestamp() == ms / 1000


def _recorded(faults: str, events: int, *, seed: int = 3, speed: float = 60.0, rate: float = 1000.0,
              name: str = "default") -> tuple[list[tuple[object, str | None]], FaultPlan]:
    """(emitted, fault) in emission order; fault None for clean events and for duplicate copies ("copy")."""
    plan = FaultPlan(parse_faults(faults), events, random.Random(seed ^ 0xFA17))
    picks: list[str | None] = []
    original = plan.pick

    def pick(index: int, stream: str) -> str | None:
        picks.append(original(index, stream))
        return picks[-1]

    plan.pick = pick  # type: ignore[method-assign]
    generator = Generator(scenario.load(name), seed=seed, start=START, rate=rate, speed=speed, pii_key=b"k",
                          faults=plan)
    out: list[tuple[object, str | None]] = []
    seen = 0
    for emitted in generator.events(events):
        if len(picks) > seen:
            seen = len(picks)
            out.append((emitted, picks[-1]))
        else:
            out.append((emitted, "copy"))
    return out, plan


def test_fault_counts_are_exact_and_reported() -> None:
    events = 5000
    out, plan = _recorded(ALL, events)
    summary = plan.summary()
    eligible = events - WARMUP_EVENTS
    for kind, fraction in parse_faults(ALL).items():
        assert summary["injected"][kind] == round(fraction * eligible), kind
    assert summary["unplaced"] == 0
    assert len(out) == events + summary["injected"]["duplicate"]
    assert Counter(kind for _, kind in out if kind not in (None, "copy")) == Counter(summary["injected"])
    assert all(kind is None for _, kind in out[:WARMUP_EVENTS])
    malformed = 0
    for emitted, kind in out:
        try:
            json.loads(emitted.value)
        except ValueError:
            malformed += 1
            assert kind == "malformed"
            assert re.match(rb'\{"type":"(payment|dossier|id_activation)",', emitted.value), emitted.value
    assert malformed == summary["injected"]["malformed"]


def test_faults_do_what_they_say() -> None:
    """Each event carries one fault at most; truth-style lateness (against the per-type watermark, 10 minutes
    allowed) rejects exactly the too_late events, and `late` ones stay well within the allowance."""
    out, plan = _recorded(E2E, 20_000, seed=11, speed=30.0, rate=2000.0)
    watermark: dict[str, float] = {}
    rejected_late = 0
    for emitted, kind in out:
        try:
            event = json.loads(emitted.value)
        except ValueError:
            assert kind == "malformed"
            continue
        moment = datetime.fromisoformat(event["event_time"]).timestamp()
        assert moment == pytest.approx(emitted.event_time, abs=1e-6)
        mark = watermark.get(event["type"], 0.0)
        lateness = mark - moment
        if kind == "late":
            assert lateness <= SHIFTS["late"][1] + 0.001 < 600, lateness
        if kind == "too_late":
            assert lateness > 600, lateness
        if kind == "unknown_province":
            assert event["province_code"] == "99"
        if kind == "bad_qr":
            assert event["type"] == "payment"
            with pytest.raises(ValueError):
                decode(event["qr_payload"])
        elif event["type"] == "payment":
            decode(event["qr_payload"])
        if lateness > 600:
            rejected_late += 1
            continue
        watermark[event["type"]] = max(mark, moment)
    assert rejected_late == plan.summary()["injected"]["too_late"] > 0


def test_shifted_events_move_back_by_their_fault_s_range() -> None:
    out, _ = _recorded("late=0.05,too_late=0.05,out_of_order=0.05", 3000, seed=21)
    previous = None
    shifted = 0
    for emitted, kind in out:
        if kind in SHIFTS and previous is not None:
            low, high = SHIFTS[kind]
            back = previous - emitted.event_time  # the event's own time is at or after `previous`
            assert low - 5 <= back <= high + 0.001, (kind, back)
            shifted += 1
        if kind is None:
            previous = emitted.event_time
    assert shifted == 3 * round(0.05 * (3000 - WARMUP_EVENTS))


def test_clock_skew_and_conflicting_duplicates_are_exact_and_do_what_they_say() -> None:
    events = 4000
    out, plan = _recorded("clock_skew=0.02,conflicting_duplicate=0.03,duplicate=0.01", events, seed=31)
    summary = plan.summary()
    assert summary["injected"] == {"clock_skew": 76, "conflicting_duplicate": 114, "duplicate": 38}
    assert summary["expected_dead_letters"] == 76 + 114
    assert len(out) == events + 114 + 38  # both kinds of copy are extra messages
    first: dict[str, tuple[bytes, float]] = {}
    previous = 0.0
    skewed = restamped = 0
    for emitted, kind in out:
        event = json.loads(emitted.value)
        if kind == "clock_skew":
            ahead = emitted.event_time - previous
            assert CLOCK_SKEW_S[0] - 5 <= ahead <= CLOCK_SKEW_S[1], ahead
            skewed += 1
        if kind == "copy" and event["event_id"] in first:
            value, moment = first[event["event_id"]]
            if value != emitted.value:  # a re-stamped copy: the same event otherwise, in a later minute
                restamped += 1
                assert RESTAMP_S[0] <= emitted.event_time - moment <= RESTAMP_S[1] + 0.001
                assert {**event, "event_time": None} == {**json.loads(value), "event_time": None}
        first.setdefault(event["event_id"], (emitted.value, emitted.event_time))
        if kind is None:
            previous = emitted.event_time
    assert (skewed, restamped) == (76, 114)


@pytest.mark.parametrize("name", scenario.available())
def test_every_scenario_loads_and_generates(name: str) -> None:
    run: Run = generate(name, 2000, speed=5000.0)
    assert Counter(STREAM_OF_TYPE[e["type"]] for e in run.events).keys() == {"payments", "dossiers", "identity"}


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("payments", "hourly", [1.0] * 23, "hourly"),
    ("dossiers", "weekly", [0.0] * 7, "weekly"),
    ("dossiers", "online_share", 1.2, "online_share"),
    ("provinces", "96", {"late_rat": 0.2}, "unknown keys"),
    ("provinces", "95", {"late_rate": 0.2}, "current 2-digit codes"),
    ("identity", "campaigns", [{"provinces": ["XX"], "boost": 2.0}], "campaigns"),
])
def test_invalid_scenarios_are_refused_with_the_key(section: str, key: str, value: object, message: str) -> None:
    bad = scenario.load("default")
    bad.setdefault(section, {})[key] = value
    with pytest.raises(ValueError, match=message):
        Generator(bad, seed=1, start=START, rate=100, speed=1, pii_key=b"k", faults=FaultPlan({}, None,
                                                                                               random.Random(1)))


def test_start_in_another_offset_and_open_ended_generation() -> None:
    start = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    plan = FaultPlan(parse_faults("duplicate=0.01"), None, random.Random(1))
    generator = Generator(scenario.load("default"), seed=1, start=start, rate=500, speed=1, pii_key=b"k",
                          faults=plan)
    stream = generator.events(None)
    first = [next(stream) for _ in range(3000)]
    assert first[0].event_time >= start.timestamp()
    assert json.loads(first[0].value)["event_time"].endswith("+07:00")


def test_malformed_lines_keep_the_type_field_for_routing() -> None:
    run = generate("vneid-campaign", 2000)
    generator = run.generator
    samples = {e["type"]: e for e in run.events}
    assert samples.keys() == {"payment", "dossier", "id_activation"}
    for kind, event in samples.items():
        for _ in range(1500):  # every truncation point is drawn many times
            key = event["dossier_id"] if kind == "dossier" else event["event_id"]
            emitted = generator._apply_fault("malformed", dict(event), STREAM_OF_TYPE[kind], key, 1.0)
            assert emitted.value.startswith(b'{"type":"%s",' % kind.encode()), emitted.value
            with pytest.raises(ValueError):
                json.loads(emitted.value)


def test_a_missing_scenario_key_is_named() -> None:
    bad = scenario.load("default")
    del bad["dossiers"]["lifecycle_scale"]
    with pytest.raises(ValueError, match="lifecycle_scale"):
        scenario.validate(bad)
