"""Coverage-guided fuzzing (atheris, libFuzzer) of the per-event hot path and the dead-letter masking.

    python deploy/fuzz/fuzz_decode.py --seeds DIR            # write the seed corpus into DIR
    python deploy/fuzz/fuzz_decode.py DIR -max_total_time=600 -dict=deploy/fuzz/decode.dict

The first byte of an input picks the target, the rest is its input:
  - streams.decode.decode_values: the rest split on 0x1E into messages (0x1F alone: a tombstone), for one of
    the three streams and a small size limit. It must return one result per message, each an event or a
    Rejection with a dead-letter reason, the same result as decoding that message alone, and what the
    pydantic model alone gives (the fast path of schemas/fast_events.py accepts only what the contract
    accepts, with the same values; its rejections are the contract's own);
  - schemas.vietqr.decode on the rest read as UTF-8 (invalid bytes as lone surrogates): only VietQRError;
  - schemas.events.mask_personal_data: masking keeps the length (one `*` per character) and cuts to
    exactly its limit; masking again only ever masks more, and changes nothing in ASCII text that was
    not cut (VietQR lengths count bytes, so a masked multi-byte character, or a cut payload, can make
    a second pass read a hostile payload differently).
Any other exception, a failed check, a hang (-timeout) or memory blow-up (-rss_limit_mb) is a crash:
libFuzzer stops, writes the input to crash-<sha1> (see -artifact_prefix) and exits non-zero.
PULSE_FUZZ_SELFTEST=1 plants a crash on inputs starting with 0xFF, to prove a crash is reported.
"""
from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import atheris  # noqa: E402 - after the sys.path line above, so the instrumented imports are the checkout's

with atheris.instrument_imports(include=["streams", "schemas"]):
    from schemas.events import DossierEvent, IdActivation, Payment, mask_personal_data
    from schemas.fast_events import FastDossierEvent, FastIdActivation, FastPayment, event_fields
    from schemas.vietqr import REASONS, VietQRError, encode
    from schemas.vietqr import decode as decode_vietqr
    from streams.decode import Rejection, decode_values, validate_by_contract

# Each stream's event kinds: the fast path's Struct, or the pydantic model where only the contract was sure.
STREAMS = (("payments", (Payment, FastPayment)), ("dossiers", (DossierEvent, FastDossierEvent)),
           ("identity", (IdActivation, FastIdActivation)))
DEAD_LETTER_REASONS = {"malformed_json", "invalid", "unknown_province", "bad_qr", "too_large"}
MESSAGE_SEPARATOR = b"\x1e"
TOMBSTONE = b"\x1f"
SELFTEST = os.environ.get("PULSE_FUZZ_SELFTEST") == "1"


def check_decode(selector: int, body: bytes) -> None:
    stream, kinds = STREAMS[selector % 3]
    max_bytes = 64 + (selector // 3) * 64  # 64..5,504 bytes: the size limit is exercised too
    values = [None if part == TOMBSTONE else part for part in body.split(MESSAGE_SEPARATOR)]
    results = decode_values(stream, values, max_bytes)
    if len(results) != len(values):
        raise AssertionError(f"{len(values)} messages, {len(results)} results")
    for result in results:
        if type(result) not in kinds and not (isinstance(result, Rejection) and result.reason in DEAD_LETTER_REASONS
                                              and result.error):
            raise AssertionError(f"unexpected result {result!r}")
    alone = [decode_values(stream, [value], max_bytes)[0] for value in values]
    if results != alone:
        raise AssertionError(f"batch and single decoding differ:\n{results}\n{alone}")
    for value, result in zip(values, results):
        if value is not None and len(value) <= max_bytes:
            check_same_as_contract(stream, value, result)


def _same_value(a: object, b: object) -> bool:
    if isinstance(a, datetime):  # the tzinfo classes differ (pydantic-core's, the standard library's)
        return isinstance(b, datetime) and a == b and a.utcoffset() == b.utcoffset()
    return type(a) is type(b) and a == b  # True == 1 in Python: the types must agree too


def check_same_as_contract(stream: str, value: bytes, result: object) -> None:
    """The fast path may only accept what the pydantic model accepts, with the same values (types and UTC
    offsets included); a rejection is the model's own."""
    expected = validate_by_contract(stream, value)
    if isinstance(expected, Rejection) or isinstance(result, Rejection):
        if result != expected:
            raise AssertionError(f"verdicts differ: {result!r} / contract: {expected!r}")
        return
    have, want = event_fields(result), event_fields(expected)
    if list(have) != list(want) or not all(_same_value(have[name], want[name]) for name in want):
        raise AssertionError(f"values differ: {have} / contract: {want}")


def check_vietqr(body: bytes) -> None:
    try:
        decode_vietqr(body.decode("utf-8", "surrogateescape"))
    except VietQRError as error:
        if error.reason not in REASONS:
            raise AssertionError(f"unknown reason {error.reason!r}") from None


def check_masking(selector: int, body: bytes) -> None:
    text = body.decode("utf-8", "surrogateescape")
    limit = None if selector % 2 else selector * 8
    masked = mask_personal_data(text, limit)
    expected = len(text) if limit is None or len(text) <= limit else limit
    if len(masked) != expected:  # one `*` per masked character; a cut text is exactly `limit` long
        raise AssertionError(f"masked text has {len(masked)} characters, not {expected}")
    again = mask_personal_data(masked, limit)
    if len(again) != len(masked) or any(a != b and b != "*" for a, b in zip(masked, again)):
        raise AssertionError("masking a masked text revealed or changed something")  # it may only mask more
    if again != masked and text.isascii() and len(text) == expected:
        raise AssertionError("masking ASCII text is not idempotent")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    head, body = data[0], data[1:]
    if SELFTEST and head == 0xFF:
        raise RuntimeError("planted crash (PULSE_FUZZ_SELFTEST)")
    if head < 0xB0:
        check_decode(head, body)
    elif head < 0xD8:
        check_vietqr(body)
    else:
        check_masking(head - 0xD8, body)


def write_seeds(directory: Path) -> int:
    """Valid events, near misses and VietQR payloads, each prefixed with the byte that picks its target."""
    directory.mkdir(parents=True, exist_ok=True)
    qr = encode("970405", "12290887360093", amount=66_000)
    payment = (b'{"type":"payment","event_id":"7204e52d-b222-4a58-808a-05a6c4647159","event_time":'
               b'"2026-01-05T07:00:01.157+07:00","province_code":"66","market_id":"MKT-66-018","merchant_id":'
               b'"MKT-66-018-04","payer_bank_bin":"970436","payee_bank_bin":"970405","amount_vnd":66000,'
               b'"channel":"vietqr_dynamic","status":"success","qr_payload":"' + qr.encode() + b'"}')
    dossier = (b'{"type":"dossier","event_id":"7204e52d-b222-4a58-808a-05a6c4647150","event_time":'
               b'"2026-01-05T08:00:00+07:00","province_code":"24","dossier_id":"HS-1","procedure_code":"TTHC-1",'
               b'"full_process":true,"channel":"online","stage":"returned","due_time":"2026-01-06T08:00:00+07:00",'
               b'"paid_online":true,"vneid_authenticated":true}')
    activation = (b'{"type":"id_activation","event_id":"7204e52d-b222-4a58-808a-05a6c4647151","event_time":'
                  b'"2026-01-05T08:00:00+07:00","province_code":"48","citizen_ref":"' + b"ab" * 32 + b'","level":2,'
                  b'"method":"police_station","age_band":"25-39"}')
    events = {0: payment, 1: dossier, 2: activation}
    seeds: list[bytes] = []
    for selector in range(3):
        event = events[selector]
        big = selector + 3 * 20  # a size limit of 1,344 bytes: room for two events
        seeds += [bytes([big]) + event, bytes([big]) + event + MESSAGE_SEPARATOR + event,
                  bytes([big]) + event[:60] + MESSAGE_SEPARATOR + TOMBSTONE + MESSAGE_SEPARATOR + event,
                  bytes([big]) + event + b"," + event + MESSAGE_SEPARATOR + b'{"x":"}' + MESSAGE_SEPARATOR + b'{"}',
                  bytes([selector]) + event]
    vectors = (ROOT / "tests" / "data" / "vietqr_vectors.jsonl").read_text(encoding="utf-8").splitlines()
    import json

    payloads = [json.loads(line)["payload"].encode() for line in vectors if line.strip()][:40]
    seeds += [b"\xb0" + payload for payload in payloads]
    seeds += [b"\xd9" + payment, b"\xda" + b'{"citizen_ref":"079203001234","qr_payload":"' + qr.encode() + b'"}']
    for number, seed in enumerate(seeds):
        (directory / f"seed-{number:03d}").write_bytes(seed)
    return len(seeds)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        print(f"wrote {write_seeds(Path(sys.argv[2]))} seeds to {sys.argv[2]}")
        sys.exit(0)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
