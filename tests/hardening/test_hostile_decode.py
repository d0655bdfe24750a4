"""Hostile input at the decoder (issue 8): whatever arrives, decode_values returns one result per message,
never raises, and gives each message exactly what decoding it alone gives, batch or no batch."""
from __future__ import annotations

import json
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import DossierEvent, IdActivation, Payment
from schemas.fast_events import FAST_MODELS, event_fields
from schemas.vietqr import REASONS, VietQRError, encode
from schemas.vietqr import decode as decode_vietqr
from streams.decode import Rejection, decode_values
from tests.hardening.hostile import activation, awkward_valid_events, dossier, dumps, hostile_messages, payment

MAX_BYTES = 262_144
STREAMS = ("payments", "dossiers", "identity")
MODELS = {"payments": Payment, "dossiers": DossierEvent, "identity": IdActivation}
# An accepted message decodes to the stream's fast-path Struct, or to its pydantic model where only the
# contract was sure (schemas/fast_events.py); either is an event of that stream.
ACCEPTED = {stream: (model, FAST_MODELS[stream]) for stream, model in MODELS.items()}
DEAD_LETTER_REASONS = {"malformed_json", "invalid", "unknown_province", "bad_qr", "too_large"}

VALID = {
    "payments": [dumps(payment(n, n)) for n in range(3)],
    "dossiers": [dumps(dossier(n, n)) for n in range(3)],
    "identity": [dumps(activation(n, n)) for n in range(3)],
}
# Pieces that shift a spliced JSON array when they land next to each other.
FRAGMENTS = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b" ", b"\n", b"1", b"null", b'"x"', b'{"x":"',
             b'"}', b"}]", b"[{", b'{"a":[{}', b"{}]}", b"\xff", b"\xc3", b"\x00"]


def alone(stream: str, values: list[bytes | None], max_bytes: int = MAX_BYTES) -> list:
    return [decode_values(stream, [value], max_bytes)[0] for value in values]


def check(stream: str, values: list[bytes | None], max_bytes: int = MAX_BYTES) -> list:
    results = decode_values(stream, values, max_bytes)
    assert len(results) == len(values)
    for result in results:
        assert isinstance(result, (*ACCEPTED[stream], Rejection)), result
        if isinstance(result, Rejection):
            assert result.reason in DEAD_LETTER_REASONS and result.error
    assert results == alone(stream, values, max_bytes), "a message's result depends on its neighbours"
    return results


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, list[bytes | None]]:
    stream = draw(st.sampled_from(STREAMS))
    valid = VALID[stream]
    pieces = st.sampled_from(FRAGMENTS + valid + [v[:40] for v in valid] + [v[40:] for v in valid])
    value = st.one_of(
        st.sampled_from(valid + [valid[0] + b"," + valid[1], b'{"x":"}', b'{"}']),
        st.lists(pieces, min_size=1, max_size=5).map(b"".join),
        st.binary(max_size=80),
        st.none(),
    )
    splice_kit = st.sampled_from([valid[0] + b"," + valid[1], b'{"x":"}', b'{"}', b'"', valid[2]])
    return stream, draw(st.lists(value, max_size=10) | st.lists(splice_kit, min_size=3, max_size=6))


@settings(max_examples=600, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_any_batch_gives_one_result_per_message_equal_to_decoding_it_alone(batch: tuple[str, list]) -> None:
    check(*batch)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(STREAMS), st.lists(st.binary(max_size=300) | st.none(), max_size=8), st.integers(0, 400))
def test_arbitrary_bytes_never_raise(stream: str, values: list[bytes | None], max_bytes: int) -> None:
    check(stream, values, max_bytes)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(STREAMS), st.lists(st.text(max_size=200), max_size=6), st.sampled_from(
    ["utf-8", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1258", "utf-8-sig"]))
def test_text_in_any_encoding_never_raises(stream: str, texts: list[str], encoding: str) -> None:
    check(stream, [text.encode(encoding, "replace") for text in texts])


def test_splicing_cannot_turn_malformed_messages_into_events() -> None:
    """Regression: these three once came back as two accepted events and one malformed message."""
    a, b = dumps(activation(1)), dumps(activation(2))
    for trio in ([a + b"," + b, b'{"x":"}', b'{"}'], [a + b"," + b, b'"', b'"'],
                 [b'{"a":"}', b'{"}', a], [b'{"x":[{}', b"{}]}", a]):
        results = check("identity", trio)
        assert all(isinstance(result, Rejection) for result in results[:2]), results


def test_hostile_corpus_gets_the_expected_reasons_in_one_batch() -> None:
    for stream in STREAMS:
        cases = [h for h in hostile_messages(MAX_BYTES) if h.stream == stream]
        values = [h.value for h in cases] + VALID[stream]
        results = check(stream, values)
        assert [r.reason for r in results[: len(cases)]] == [h.reason for h in cases]
        assert all(type(r) in ACCEPTED[stream] for r in results[len(cases):])


def test_size_limit_is_exact() -> None:
    event = payment(7)
    base = dumps(event | {"pad": ""})
    exact = dumps(event | {"pad": "p" * (1_000 - len(base))})
    assert len(exact) == 1_000
    over = dumps(event | {"pad": "p" * (1_001 - len(base))})
    ok, too_large = check("payments", [exact, over], max_bytes=1_000)
    assert type(ok) in ACCEPTED["payments"]
    assert too_large == Rejection("too_large", "message of 1001 bytes exceeds the limit of 1000")


@pytest.mark.parametrize("value", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(100_000)) + b"}",
    b"[" + b",".join([b"1"] * 100_000) + b"]",
    b'"' + b"\\u0000" * 100_000 + b'"',
])
def test_deep_and_wide_json_is_rejected_quickly(value: bytes) -> None:
    started = time.perf_counter()
    [result] = check("dossiers", [value], max_bytes=4_000_000)
    assert isinstance(result, Rejection) and result.reason in {"malformed_json", "invalid"}
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize(("changes", "field"), [
    ({"amount_vnd": -1}, "amount_vnd"), ({"amount_vnd": 10**30}, "amount_vnd"), ({"amount_vnd": 10**12 + 1}, "amount_vnd"),
    ({"amount_vnd": True}, "amount_vnd"), ({"event_time": "0001-01-01T00:00:00+00:00"}, "event_time"),
    ({"event_time": "9999-12-31T23:59:59+14:00"}, "event_time"), ({"event_time": "1999-12-31T23:59:59+00:00"}, "event_time"),
    ({"event_time": "2100-01-01T00:00:00+00:00"}, "event_time"), ({"event_time": 1767571200}, "event_time"),
    ({"payer_bank_bin": "\u0669\u0667\u0660\u0664\u0660\u0665"}, "payer_bank_bin"),
])
def test_out_of_range_values_are_invalid(changes: dict, field: str) -> None:
    [result] = check("payments", [dumps(payment(3) | changes)])
    assert isinstance(result, Rejection) and result.reason == "invalid" and field in result.error


def test_bounds_themselves_are_accepted() -> None:
    low = payment(4, event_time="2000-01-01T00:00:00+00:00")
    high = payment(5, event_time="2099-12-31T23:59:59.999+00:00", amount_vnd=10**12,
                   qr_payload=encode("970405", "1", amount=10**12))
    results = check("payments", [dumps(low), dumps(high)])
    assert all(type(result) in ACCEPTED["payments"] for result in results), results


def test_unknown_fields_and_awkward_text_are_accepted_verbatim() -> None:
    for stream, event in awkward_valid_events():
        [result] = check(stream, [dumps(event)])
        assert type(result) in ACCEPTED[stream], result
        for name in ("market_id", "merchant_id", "dossier_id", "procedure_code"):
            if name in event:
                assert getattr(result, name) == event[name]


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=600))
def test_vietqr_decode_raises_only_its_own_error_on_any_text(text: str) -> None:
    try:
        decode_vietqr(text)
    except VietQRError as error:
        assert error.reason in REASONS


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=600))
def test_vietqr_decode_on_bytes_read_as_latin1_or_with_surrogates(data: bytes) -> None:
    for text in (data.decode("latin-1"), data.decode("utf-8", "surrogateescape")):
        try:
            decode_vietqr(text)
        except VietQRError as error:
            assert error.reason in REASONS


def test_json_round_trip_of_accepted_events_keeps_text_exactly() -> None:
    for stream, event in awkward_valid_events():
        [result] = decode_values(stream, [dumps(event)], MAX_BYTES)
        back = json.loads(orjson.dumps(event_fields(result)))
        for name in ("market_id", "merchant_id", "dossier_id", "procedure_code"):
            if name in event:
                assert back[name] == event[name]
