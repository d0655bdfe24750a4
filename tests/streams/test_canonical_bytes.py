"""The fast path's Structs are written by msgspec for their fingerprint (streams/pipeline.py, `_canonical_at`),
the pydantic models by orjson over their fields' dict, as every event was before: both must give the same
bytes, or stored fingerprints would stop matching (tests/streams/test_fingerprint_golden.py pins a few).
Here the reference is the dict path itself, over every Struct a faulty simulation decodes to, over every
Unicode scalar value in a text field, and over instants across the whole range the fast path accepts."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import msgspec
import orjson
import pytest

from pulse.settings import Settings
from pulse.simulate import SimulationOptions, build_generator
from schemas.events import EVENT_MODELS
from schemas.fast_events import FAST_MODELS, FastEvent, event_fields, instant_fields
from streams.decode import decode_values
from streams.pipeline import canonical, unix_seconds
from tests.hardening.hostile import awkward_valid_events, dumps

FAULTS = "duplicate=0.05,late=0.05,out_of_order=0.05,malformed=0.05,unknown_province=0.05,bad_qr=0.05,clock_skew=0.05"


def by_dict(event: FastEvent) -> bytes:
    """The canonical bytes as main wrote them for every event: the fields' dict, instants as Unix seconds."""
    return orjson.dumps(event_fields(event), default=datetime.timestamp, option=orjson.OPT_PASSTHROUGH_DATETIME)


def structs() -> list[FastEvent]:
    options = SimulationOptions(seed=5, events=3_000, rate=100_000.0, speed=60.0, faults=FAULTS, demo_key=True)
    values: dict[str, list[bytes]] = {}
    for emitted in build_generator(options, Settings()).events(3_000):
        values.setdefault(emitted.stream, []).append(emitted.value)
    for stream, event in awkward_valid_events():
        values.setdefault(stream, []).append(dumps(event))
    decoded = [r for stream, vs in values.items() for r in decode_values(stream, vs, 1 << 20)]
    return [r for r in decoded if isinstance(r, FastEvent)]


STRUCTS = structs()


def test_every_decoded_struct_is_written_as_its_fields_dict() -> None:
    assert {type(event) for event in STRUCTS} == set(FAST_MODELS.values())  # all three streams, not vacuous
    assert len(STRUCTS) > 2_500
    differing = [(canonical(e), by_dict(e)) for e in STRUCTS if canonical(e) != by_dict(e)]
    assert not differing, differing[:3]


@pytest.mark.parametrize("stream", sorted(FAST_MODELS))
def test_every_unicode_scalar_value_is_escaped_alike(stream: str) -> None:
    """Escapes of control characters, quotes, backslashes, non-ASCII text: msgspec's and orjson's agree."""
    event = next(e for e in STRUCTS if type(e) is FAST_MODELS[stream])
    text_field = {"payments": "market_id", "dossiers": "sector", "identity": "age_band"}[stream]
    scalars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(scalars), 512):
        changed = msgspec.structs.replace(event, **{text_field: "".join(scalars[start:start + 512])})
        assert canonical(changed) == by_dict(changed), start


def test_instants_across_the_fast_paths_range_are_written_alike() -> None:
    """Floats as Unix seconds: the same shortest form from both writers for any accepted instant."""
    dossier = next(e for e in STRUCTS if type(e) is FAST_MODELS["dossiers"])
    first = datetime(2001, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    last = datetime(2097, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(-timedelta(hours=12)))
    span_us = int((last - first).total_seconds() * 1e6)
    rng = random.Random(14)
    moments = [first, last] + [first + timedelta(microseconds=rng.randrange(span_us)) for _ in range(20_000)]
    moments += [m.replace(microsecond=rng.choice((0, 1, 10, 100_000, 250_000, 500_000, 999_999))) for m in moments[:5_000]]
    for moment in moments:
        changed = msgspec.structs.replace(dossier, event_time=moment, due_time=moment + timedelta(days=3))
        assert canonical(changed) == by_dict(changed), moment


@pytest.mark.parametrize("stream", sorted(FAST_MODELS))
def test_the_instants_written_as_seconds_are_the_models_datetime_fields(stream: str) -> None:
    """A new instant field must be written as Unix seconds by the Struct path too (instant_fields finds it)."""
    properties = EVENT_MODELS[stream].model_json_schema()["properties"]
    model_instants = tuple(name for name in EVENT_MODELS[stream].model_fields
                           if properties[name].get("format") == "date-time")
    assert model_instants and instant_fields(FAST_MODELS[stream]) == model_instants


def test_unix_seconds_is_timestamp_bit_for_bit() -> None:
    """_route and canonical() take event times from unix_seconds: the same float as datetime.timestamp()."""
    rng = random.Random(7)
    zones = [timezone.utc, timezone(timedelta(hours=7)), timezone(-timedelta(hours=23, minutes=59)),
             timezone(timedelta(hours=23, minutes=59)), timezone(timedelta(hours=5, minutes=45))]
    zones += [timezone(timedelta(minutes=rng.randrange(-1439, 1440))) for _ in range(50)]
    first = datetime(2000, 1, 1, tzinfo=timezone.utc)
    span_us = int((datetime(2100, 1, 1, tzinfo=timezone.utc) - first).total_seconds() * 1e6)
    moments = [(first + timedelta(microseconds=rng.randrange(span_us))).astimezone(rng.choice(zones))
               for _ in range(100_000)]
    moments += [msgspec.json.decode(b'"2026-01-05T07:00:00.%06d+07:00"' % n, type=datetime) for n in range(0, 10**6, 997)]
    moments += [datetime(2026, 1, 5, 7), first.astimezone(zones[1]).replace(tzinfo=None)]  # naive: timestamp()'s rule
    differing = [m for m in moments if unix_seconds(m) != m.timestamp()]
    assert not differing, differing[:3]
