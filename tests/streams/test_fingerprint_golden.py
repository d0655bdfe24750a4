"""Fingerprints are stored (event_index) and decide conflicting duplicates across deploys: the bytes of
`canonical` and the value of `fingerprint` must never change. The values below were computed by main's
code at 445142a (pydantic events, canonical over `event.__dict__`); both kinds of event object must give
them: the fast path's Structs and the pydantic models the fallback returns."""
from __future__ import annotations

import pytest

from schemas.fast_events import FAST_MODELS
from sinks.dry_run import DryRunSink
from streams.decode import decode_values, validate_by_contract
from streams.pipeline import Message, Pipeline, canonical, fingerprint
from tests.hardening.hostile import activation, dossier, dumps, payment

CASES = {
    "payment_utc": ("payments", payment(1), 3053076747350195996),
    "payment_legacy_province_and_offset": (
        "payments",
        payment(2, 30.5, province_code="30", event_time="2026-01-05T07:00:30.123456+07:00", category="hospital"),
        2628250025556776322,
    ),
    "dossier_rated": (
        "dossiers",
        dossier(3, 61, stage="rated", rating=4, sector="health", fee_vnd=50000, result_electronic=True,
                event_time="2026-01-05T00:01:01Z"),
        15099636119827869946,
    ),
    "dossier_defaults": ("dossiers", dossier(4, 7200.25, province_code="02", due_time="2026-01-06T09:00:00-05:00"),
                         5342557653403930572),
    "activation_step": ("identity", activation(5, 3.001, step="approved", level=1, method="self_service",
                                               age_band="60+"), 15615939686062879174),
}
CANONICAL_DOSSIER_DEFAULTS = (
    b'{"event_id":"7204e52d-b222-4a58-808a-000000000004","event_time":1767578400.25,"province_code":"08",'
    b'"type":"dossier","dossier_id":"HS-4","procedure_code":"1.001612","full_process":true,"channel":"online",'
    b'"stage":"submitted","due_time":1767708000.0,"paid_online":false,"vneid_authenticated":true,"sector":"",'
    b'"fee_vnd":0,"result_electronic":false,"rating":null}'
)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fingerprints_are_those_main_stored(name: str) -> None:
    stream, event, expected = CASES[name]
    value = dumps(event)
    [fast] = decode_values(stream, [value], 1 << 20)
    contract = validate_by_contract(stream, value)
    assert type(fast) is FAST_MODELS[stream]  # the fast path took it, so both kinds are checked
    assert fingerprint(fast) == fingerprint(contract) == expected
    assert canonical(fast) == canonical(contract)


def test_canonical_bytes_are_those_main_wrote() -> None:
    stream, event, _ = CASES["dossier_defaults"]
    [fast] = decode_values(stream, [dumps(event)], 1 << 20)
    assert canonical(fast) == canonical(validate_by_contract(stream, dumps(event))) == CANONICAL_DOSSIER_DEFAULTS


def test_the_pipeline_counts_each_copy_with_the_same_fingerprint() -> None:
    """_route digests the event's fields with the event time it already computed: the same value."""
    sink = DryRunSink()
    topics = {"payments": "t.payments", "dossiers": "t.dossiers", "identity": "t.identity"}
    pipeline = Pipeline(sink, {topic: stream for stream, topic in topics.items()}, lateness_s=1e12,
                        max_message_bytes=1 << 20, max_future_s=1e12)
    messages = [Message(topics[stream], 0, offset, None, dumps(event), 0.0)
                for offset, (stream, event, _) in enumerate(CASES.values())]
    outcome = pipeline.process(messages)
    assert outcome.accepted == len(CASES)
    stored = {stream_and_id[1]: copy.fingerprint for stream_and_id, copy in sink.copies.items()}
    assert sorted(stored.values()) == sorted(expected for _, _, expected in CASES.values())
