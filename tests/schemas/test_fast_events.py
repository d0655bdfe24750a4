"""Parity of the fast validator with the pydantic contract (schemas/fast_events.py, issue 14).

For every message of a large corpus, `decode_values` (fast path, pydantic fallback) must give exactly
what the pydantic model alone gives: the same verdict, the same dead-letter reason and error text, and
for accepted messages the same field values, Python types and UTC offsets included. The corpus: every
message the simulators produce with all faults on, the hostile corpus, the VietQR vectors, and
systematic mutations of one valid event per stream (each field removed, null, of each wrong JSON type,
at and beyond its bounds; extra and duplicated keys; other digits; instants in many shapes).
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pulse.settings import Settings
from pulse.simulate import SimulationOptions, build_generator
from schemas.events import EVENT_MODELS
from schemas.fast_events import FAST_MODELS, event_fields, field_names
from schemas.provinces import code_map
from schemas.vietqr import encode
from streams.decode import Rejection, decode_values, validate_by_contract
from streams.pipeline import canonical
from tests.hardening.hostile import activation, awkward_valid_events, dossier, dumps, hostile_messages, payment

MAX_BYTES = 262_144
ALL_FAULTS = ("duplicate=0.05,late=0.05,out_of_order=0.05,too_late=0.05,malformed=0.05,unknown_province=0.05,"
              "bad_qr=0.05,clock_skew=0.05,conflicting_duplicate=0.05")
VECTORS = Path(__file__).resolve().parents[1] / "data" / "vietqr_vectors.jsonl"
SHARED_VECTORS = Path(__file__).resolve().parents[3] / "shared" / "domain" / "vietqr_vectors.jsonl"
BASE = {"payments": payment(1, 30.5), "dossiers": dossier(2, 61), "identity": activation(3, 7)}
# A static QR (no amount) agrees with any amount_vnd: the amount's own bounds are then what decides.
STATIC_PAYMENT = payment(4, 12, qr_payload=encode("970405", "102900000004"))
# Each JSON type, for "set this field to the wrong type".
JSON_VALUES: list[Any] = [None, True, False, 0, 1, -1, 1.0, 0.5, 1e3, "", "x", "1", "true", [], [1], {}, {"a": 1}]
OTHER_DIGITS = ("\u0661", "\uff11", "\u0967", "\u00b9", "\u2460")  # Arabic-Indic, fullwidth, Devanagari, superscript, circled
# Strings for the instants: every shape a producer might send, at and around the bounds.
INSTANTS = [
    "2026-01-05T07:00:00+07:00", "2026-01-05T00:00:00Z", "2026-01-05T00:00:00z", "2026-01-05t00:00:00Z",
    "2026-01-05 00:00:00Z", "2026-01-05T00:00:00-00:00", "2026-01-05T00:00:00+00:00", "2026-01-05T00:00:00+0700",
    "2026-01-05T00:00:00+07", "2026-01-05T00:00:00", "2026-01-05T00:00Z", "2026-01-05", "2026-01-05T00:00:00.1Z",
    "2026-01-05T00:00:00.123Z", "2026-01-05T00:00:00.123456Z", "2026-01-05T00:00:00.1234567Z",
    "2026-01-05T00:00:00.123456789+07:00", "2026-01-05T00:00:00.9999999Z", "2026-01-05T00:00:00,5Z",
    "2026-01-05T00:00:00.Z", "2026-01-05T23:59:60Z", "2026-01-05T24:00:00Z", "2026-02-29T00:00:00Z",
    "2028-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-05T00:00:00+23:59", "2026-01-05T00:00:00-23:59",
    "2026-01-05T00:00:00+24:00", "2026-01-05T00:00:00+07:60", "2026-01-05T00:00:00+07:00:00", "2026-01-05T00:00:00 Z",
    "2026-01-05T00:00:00UTC", "20260105T000000Z", "+2026-01-05T00:00:00Z", "1767571200", "", "now",
    "2000-01-01T00:00:00Z", "2000-01-01T06:59:59+07:00", "2000-01-01T07:00:00+07:00", "1999-12-31T23:59:59.999999Z",
    "2000-12-31T23:59:59-12:00", "2001-01-01T00:00:00+14:00", "2099-12-31T23:59:59.999999Z", "2100-01-01T00:00:00Z",
    "2099-12-31T19:00:00-05:00", "2100-01-01T06:00:00+07:00", "2098-12-31T23:59:59-23:59", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z", "2026-01-05T00:00:00.000000+07:00", "2026-01-05T07:00:00.000+07:00\n",
] + [f"2026-01-05T0{d}:00:00Z" for d in OTHER_DIGITS]
ESCAPED_INSTANTS = [
    rb"2026-01-05T00:00:00.123456\u0037Z", rb"2026-01-05T00:00:00\u002e1234567Z", rb"2026-01-05T00:00:00\u002E1234567+07:00",
    rb"2026-01-05T00:00:00.12\u00334567Z", rb"2026-01-05T00:00:00.123\u0034Z", rb"\u0032026-01-05T00:00:00Z",
    rb"2026-01-05\u005400:00:00Z", rb"2026-01-05T00:00:00\u005a", rb"2026-01-05T00:00:00\u002b07:00",
    rb"2026-01-05T00:00:00.1234567\\Z",
]
# Valid and invalid values per constrained field, at and beyond each bound.
BOUNDARIES: dict[str, list[Any]] = {
    "province_code": ["01", "30", "31", "96", "00", "99", "1", "001", "01\n", " 01", "1a", *(d * 2 for d in OTHER_DIGITS)],
    "payer_bank_bin": ["970436", "000000", "97043", "9704366", "970436\n", "97043a", "\u0669" * 6, " 970436"],
    "payee_bank_bin": ["970405", "970436", "97040", "970405\n"],
    "amount_vnd": [0, 1, -1, 10**12, 10**12 + 1, 2**63, 2**64, 10**30, 10001.0, True],
    "market_id": ["", "a", "a" * 64, "a" * 65, "ệ" * 64, "ệ" * 65, "\U0001f600" * 64, "\U0001f600" * 65, "\x00"],
    "merchant_id": ["", "m" * 64, "m" * 65],
    "dossier_id": ["", "d", "d" * 64, "d" * 65],
    "procedure_code": ["", "p" * 64, "p" * 65],
    "qr_payload": ["", "x" * 512, "x" * 513, encode("970405", "102900000001", amount=10001),
                   encode("970405", "102900000001"), encode("970436", "102900000001", amount=10001),
                   encode("970405", "102900000001", amount=10002)],
    "sector": ["", "s" * 64, "s" * 65],
    "fee_vnd": [0, -1, 10**12, 10**12 + 1],
    "rating": [0, 1, 5, 6, None],
    "stage": ["rated", "submitted", "returned", "Rated", "unknown"],
    "citizen_ref": ["a" * 64, "A" * 64, "a" * 62, "a" * 63, "a" * 65, "a" * 66, "ab" * 16, "g" * 64, "0" * 64, "a" * 63 + "\n", "ａ" * 64, " " + "a" * 63],
    "level": [1, 2, 0, 3, 1.0, True, "1"],
    "age_band": ["00-00", "99+", "35-44", "60+", "6+", "60++", "35-4", "35_44", "35-44\n", "\u0663\u0665-44", "+60",
                 "ab+", "1a+", "a1-22", "11-2b", "11+22", "1-+22"],
    "step": ["registered", "approved", "activated", "Activated", ""],
    "category": ["market", "welfare", "other", ""],
    "channel": ["vietqr_static", "vietqr_dynamic", "online", "offline", "VIETQR_STATIC"],
    "status": ["success", "failed", "ok"],
    "method": ["police_station", "self_service", "online"],
    "type": ["payment", "dossier", "id_activation", "Payment", ""],
    "event_id": ["7204e52d-b222-4a58-808a-000000000009", "7204E52DB2224A58808A000000000009",
                 "{7204e52d-b222-4a58-808a-000000000009}", "urn:uuid:7204e52d-b222-4a58-808a-000000000009",
                 "7204e52d-b222-4a58-808a-00000000000", "00000000-0000-0000-0000-000000000000",
                 "7204e52d-b222-4a58-808a-00000000000\u0669", "7204e52db2224a58808a-000000000009"],
    "full_process": [True, False, 1, 0, "true"],
}


def vietqr_vectors() -> list[dict]:
    path = VECTORS if VECTORS.is_file() else SHARED_VECTORS
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def simulated_values() -> Iterator[tuple[str, bytes]]:
    """Every message of a faulty simulation (all fault kinds on), as the worker would consume it."""
    for scenario in ("default", "bac-lieu-late-dossiers", "vneid-campaign"):
        options = SimulationOptions(scenario=scenario, seed=11, events=2_000, rate=100_000.0, speed=60.0,
                                    faults=ALL_FAULTS, demo_key=True)
        for emitted in build_generator(options, Settings()).events(2_000):
            yield emitted.stream, emitted.value


def mutations(stream: str, event: dict) -> Iterator[bytes]:
    """Systematic changes of one valid event of the stream (module notes)."""
    base = event | ({"rating": None} if stream == "dossiers" else {})
    names = list(base) + [name for name in field_names(EVENT_MODELS[stream]) if name not in base]
    yield dumps(base)
    for name in names:
        yield dumps({k: v for k, v in base.items() if k != name})  # removed
        for value in JSON_VALUES + BOUNDARIES.get(name, []):
            yield dumps(base | {name: value})
    for name in ("event_time", "due_time"):
        if name in base:
            for text in INSTANTS:
                yield dumps(base | {name: text})
    for escaped in ESCAPED_INSTANTS:  # JSON escapes inside an instant: the raw bytes hide what the text says
        yield dumps(base | {"event_time": "@"}).replace(b'"@"', b'"' + escaped + b'"')
    if stream == "dossiers":
        for rating in (1, 5, 0, 6, None):
            yield dumps(base | {"stage": "rated", "rating": rating})
    text = dumps(base)
    for name in names:  # duplicated keys: a valid value first and a bad one last, and the other way round
        for other in ('"x"', "-1", "null", "[1]", "1.5"):
            yield text[:-1] + b',"%s":%s}' % (name.encode(), other.encode())
            yield b'{"%s":%s,' % (name.encode(), other.encode()) + text[1:]
    yield text[:-1] + b',"extra":{"nested":[1,2,{"a":null}]},"more":"x"}'
    yield text[:-1] + b',"deep":' + b"[" * 300 + b"]" * 300 + b"}"
    yield text[:-1] + b',"bad_utf8":"\xff"}'
    yield text[:-1] + b',"surrogate":"\\ud800"}'
    yield text[:-1] + b',"nan":NaN}'
    yield text[:-1] + b',"inf":Infinity}'
    yield text[:-1] + b',"big":123456789012345678901234567890,"tiny":1e-400,"huge":1e400}'
    yield text[:-1] + b',"escaped":"\\u0041\\n\\t\\"\\\\"}'
    yield text.replace(b'"type"', b'"\\u0074ype"')  # an escaped key
    yield b" \n\t" + text + b" \n"
    yield b"\xef\xbb\xbf" + text  # a byte order mark
    yield text + b"\x00"
    yield text[:-1]
    yield text.replace(b":", b": ").replace(b",", b", ")
    yield json.dumps(base, ensure_ascii=True).encode()


def corpus() -> Iterator[tuple[str, bytes]]:
    yield from simulated_values()
    for hostile in hostile_messages(MAX_BYTES):
        if hostile.value is not None and len(hostile.value) <= MAX_BYTES:
            yield hostile.stream, hostile.value
    for stream, event in awkward_valid_events():
        yield stream, dumps(event)
    for n, vector in enumerate(vietqr_vectors()):
        amount = vector.get("amount") or 10_000
        yield "payments", dumps(payment(5_000 + n, qr_payload=vector["payload"], payee_bank_bin=vector.get("bin") or "970405",
                                        amount_vnd=int(amount) if str(amount).isdigit() else 10_000))
    for stream, event in [*BASE.items(), ("payments", STATIC_PAYMENT)]:
        yield from ((stream, value) for value in mutations(stream, event))


def same_value(a: object, b: object) -> bool:
    if type(a) is not type(b) and not (isinstance(a, datetime) and isinstance(b, datetime)):
        return False  # True == 1 and 1 == 1.0 in Python: the types must agree too
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset() and a.isoformat() == b.isoformat()  # type: ignore[union-attr]
    return a == b


def assert_same_as_contract(stream: str, value: bytes) -> bool:
    """decode_values on this value gives what the pydantic model alone gives; True when the fast path took it."""
    [got] = decode_values(stream, [value], MAX_BYTES)
    expected = validate_by_contract(stream, value)
    if isinstance(expected, Rejection):
        assert got == expected, (value, got, expected)
        return False
    assert not isinstance(got, Rejection), (value, got, expected)
    want, have = event_fields(expected), event_fields(got)
    assert list(have) == list(want), value
    differing = {name: (have[name], want[name]) for name in want if not same_value(have[name], want[name])}
    assert not differing, (value, differing)
    assert canonical(got) == canonical(expected)
    assert orjson.dumps(have) == orjson.dumps(want)  # instants written alike too (the raw rows' JSON)
    if stream == "payments":
        assert got.account_masked == expected.account_masked  # type: ignore[union-attr]
    return type(got) is FAST_MODELS[stream]


def test_fast_path_gives_exactly_what_the_contract_gives_over_the_whole_corpus() -> None:
    taken: Counter = Counter()
    checked: Counter = Counter()
    for stream, value in corpus():
        checked[stream] += 1
        taken[stream] += assert_same_as_contract(stream, value)
    assert sum(checked.values()) > 6_000, checked
    # Not vacuous: the fast path decides most messages of each stream, and the rest were compared too.
    assert all(taken[stream] > 200 for stream in BASE), taken
    assert all(checked[stream] > taken[stream] + 100 for stream in BASE), (checked, taken)


def test_every_simulated_event_without_faults_takes_the_fast_path() -> None:
    options = SimulationOptions(seed=3, events=3_000, rate=100_000.0, speed=60.0, demo_key=True)
    values: dict[str, list[bytes]] = {}
    for emitted in build_generator(options, Settings()).events(3_000):
        values.setdefault(emitted.stream, []).append(emitted.value)
    for stream, stream_values in values.items():
        results = decode_values(stream, stream_values, MAX_BYTES)
        assert [type(result) for result in results] == [FAST_MODELS[stream]] * len(stream_values)


@pytest.mark.parametrize("stream", sorted(BASE))
def test_structs_mirror_the_models_field_for_field(stream: str) -> None:
    assert field_names(FAST_MODELS[stream]) == tuple(EVENT_MODELS[stream].model_fields)
    defaults = {name: field.default for name, field in EVENT_MODELS[stream].model_fields.items()
                if not field.is_required()}
    struct = FAST_MODELS[stream]
    struct_defaults = dict(zip(struct.__struct_fields__[len(struct.__struct_fields__) - len(struct.__struct_defaults__):],
                               struct.__struct_defaults__))
    assert struct_defaults == defaults


def test_province_codes_the_fast_path_knows_are_two_ascii_digits() -> None:
    # The fast path checks a province code by lookup alone; pydantic checks the pattern first.
    assert code_map() and all(len(code) == 2 and code.isascii() and code.isdigit() for code in code_map())
