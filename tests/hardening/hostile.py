"""Valid events with awkward content and hostile messages, shared by the hardening tests and the fuzz seeds.

Everything is deterministic: event ids come from a counter, times from BASE plus seconds.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from schemas.vietqr import encode

BASE = datetime(2026, 1, 5, 0, 0, tzinfo=timezone.utc)
SQL = "x'); DROP TABLE pulse.payments; --"
SQL_TEXTS = (  # each fits ShortText (1-64 characters), so events carrying them are valid
    SQL,
    "1'; DROP DATABASE pulse; --",
    "\\'); SELECT * FROM system.users FORMAT JSON; --",
    "a\"b\\c\n\t\r\u0000'`;",
    "\u202eRTL \U0001f600 Chợ Bến Thành",
)
ACCOUNT = "190312345678901"  # a whole account number that must never be stored or published
CITIZEN_NUMBER = "079203001234"  # a raw 12-digit CCCD that must never be stored or published
BIN = "970405"


def event_id(n: int) -> str:
    return str(uuid.UUID(int=0x7204E52D_B222_4A58_808A_000000000000 + n))


def at(seconds: float) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat()


def payment(n: int, seconds: float = 0, **changes: object) -> dict:
    amount = 10_000 + n
    return {
        "type": "payment", "event_id": event_id(n), "event_time": at(seconds), "province_code": "01",
        "market_id": f"MKT-01-{n % 7:03d}", "merchant_id": f"MKT-01-{n % 7:03d}-01", "payer_bank_bin": "970436",
        "payee_bank_bin": BIN, "amount_vnd": amount, "channel": "vietqr_dynamic", "status": "success",
        "qr_payload": encode(BIN, f"1029{n:08d}", amount=amount),
    } | changes


def dossier(n: int, seconds: float = 0, **changes: object) -> dict:
    return {
        "type": "dossier", "event_id": event_id(n), "event_time": at(seconds), "province_code": "79",
        "dossier_id": f"HS-{n}", "procedure_code": "1.001612", "full_process": True, "channel": "online",
        "stage": "submitted", "due_time": at(seconds + 86_400), "paid_online": False, "vneid_authenticated": True,
    } | changes


def activation(n: int, seconds: float = 0, **changes: object) -> dict:
    return {
        "type": "id_activation", "event_id": event_id(n), "event_time": at(seconds), "province_code": "48",
        "citizen_ref": hashlib.sha256(b"citizen-%d" % n).hexdigest(), "level": 2, "method": "police_station",
        "age_band": "25-39",
    } | changes


MAKERS = {"payments": payment, "dossiers": dossier, "identity": activation}


def dumps(event: dict) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


@dataclass(frozen=True)
class Hostile:
    name: str
    stream: str
    value: bytes | None
    reason: str  # the dead-letter reason it must get
    secret: str = ""  # personal data in it that must not be stored or published


def bad_qr_payment(n: int, seconds: float = 0) -> dict:
    """A payment whose QR (with ACCOUNT in it) fails its CRC: a dead letter that once kept the account."""
    qr = encode(BIN, ACCOUNT, amount=10_000 + n)
    return payment(n, seconds, qr_payload=qr[:-1] + ("0" if qr[-1] != "0" else "1"))


def hostile_messages(max_bytes: int, first_id: int = 900_000, huge_bytes: int = 3_000_000) -> list[Hostile]:
    """One of each kind of bad input, with the reason each must be dead-lettered with."""
    n = iter(range(first_id, first_id + 1_000))
    valid = dumps(payment(next(n)))

    def padded(size: int) -> bytes:  # a valid payment grown past the limit by an unknown field
        event = payment(next(n))
        filler = size - len(dumps(event | {"pad": ""}))
        return dumps(event | {"pad": "p" * filler})

    over_limit = padded(max_bytes + 1)
    assert len(over_limit) == max_bytes + 1
    latin1 = json.dumps(payment(next(n), market_id="Marché Bến"[:6]), ensure_ascii=False).encode("latin-1")
    invalid_utf8 = dumps(payment(next(n), market_id="MKT-X")).replace(b"MKT-X", b"MKT-\xc3\x28")
    splice_a, splice_b = dumps(activation(next(n))), dumps(activation(next(n)))
    return [
        Hostile("empty", "payments", b"", "malformed_json"),
        Hostile("tombstone", "payments", None, "invalid"),
        Hostile("binary", "payments", bytes(range(256)), "malformed_json"),
        Hostile("truncated", "payments", valid[: len(valid) // 2], "malformed_json"),
        Hostile("utf16", "payments", json.dumps(payment(next(n))).encode("utf-16"), "malformed_json"),
        Hostile("latin1", "payments", latin1, "malformed_json"),
        Hostile("invalid_utf8", "payments", invalid_utf8, "malformed_json"),
        Hostile("bom", "payments", b"\xef\xbb\xbf" + dumps(payment(next(n))), "malformed_json"),
        Hostile("nan", "payments", dumps(payment(next(n))).replace(b'"amount_vnd": ', b'"amount_vnd": NaN, "x": '),
                "invalid"),
        Hostile("deep_arrays", "dossiers", b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
        Hostile("deep_objects", "dossiers", b'{"a":' * 40_000 + b"1" + b"}" * 40_000, "malformed_json"),
        Hostile("wide_1e5_keys", "identity",
                b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(100_000)) + b"}",
                "too_large" if max_bytes < 1_500_000 else "invalid"),
        Hostile("just_over_limit", "payments", over_limit, "too_large"),
        Hostile("huge", "payments", padded(huge_bytes), "too_large"),
        Hostile("negative_amount", "payments", dumps(payment(next(n), amount_vnd=-45_000)), "invalid"),
        Hostile("zero_amount", "payments", dumps(payment(next(n), amount_vnd=0)), "invalid"),
        Hostile("amount_1e30", "payments", dumps(payment(next(n), amount_vnd=10**30)), "invalid"),
        Hostile("amount_float", "payments", dumps(payment(next(n), amount_vnd=45_000.0)), "invalid"),
        Hostile("amount_string", "payments", dumps(payment(next(n), amount_vnd="45000")), "invalid"),
        Hostile("year_1", "dossiers", dumps(dossier(next(n), event_time="0001-01-01T00:00:00+00:00")), "invalid"),
        Hostile("year_9999", "dossiers", dumps(dossier(next(n), event_time="9999-12-31T23:59:59+00:00")),
                "invalid"),
        Hostile("due_year_9999", "dossiers", dumps(dossier(next(n), due_time="9999-12-31T23:59:59+00:00")),
                "invalid"),
        Hostile("naive_time", "dossiers", dumps(dossier(next(n), event_time="2026-01-05T00:00:00")), "invalid"),
        Hostile("leap_second", "dossiers", dumps(dossier(next(n), event_time="2026-01-05T23:59:60+00:00")),
                "invalid"),
        Hostile("sql_type", "dossiers", dumps(dossier(next(n), type=SQL)), "invalid"),
        Hostile("long_text", "dossiers", dumps(dossier(next(n), dossier_id="x" * 65)), "invalid"),
        Hostile("unknown_province", "payments", dumps(payment(next(n), province_code="99")), "unknown_province"),
        Hostile("arabic_indic_province", "identity", dumps(activation(next(n), province_code="\u0660\u0661")),
                "invalid"),
        Hostile("arabic_indic_age_band", "identity", dumps(activation(next(n), age_band="\u0662\u0665-\u0663\u0669")),
                "invalid"),
        Hostile("fullwidth_bin", "payments", dumps(payment(next(n), payer_bank_bin="\uff19\uff17\uff10\uff14\uff13\uff16")),
                "invalid"),
        Hostile("bad_qr_with_account", "payments", dumps(bad_qr_payment(next(n))), "bad_qr", ACCOUNT),
        Hostile("raw_citizen_number", "identity", dumps(activation(next(n), citizen_ref=CITIZEN_NUMBER)),
                "invalid", CITIZEN_NUMBER),
        Hostile("citizen_number_in_unknown_field", "identity",
                dumps(activation(next(n), level=3, cccd=CITIZEN_NUMBER)), "invalid", CITIZEN_NUMBER),
        # Three messages that, spliced into one JSON array, once read as two valid events (see streams/decode.py).
        Hostile("splice_two_documents", "identity", splice_a + b"," + splice_b, "malformed_json"),
        Hostile("splice_open_string", "identity", b'{"x":"}', "malformed_json"),
        Hostile("splice_close_string", "identity", b'{"}', "malformed_json"),
    ]


def awkward_valid_events(first_id: int = 800_000) -> list[tuple[str, dict]]:
    """Valid events whose text fields look like SQL or are otherwise awkward: they must be counted and stored."""
    n = iter(range(first_id, first_id + 1_000))
    events: list[tuple[str, dict]] = []
    for i, text in enumerate(SQL_TEXTS):
        events.append(("payments", payment(next(n), i, market_id=text, merchant_id=text[::-1] or "m")))
        events.append(("dossiers", dossier(next(n), i, dossier_id=text, procedure_code=text)))
    events.append(("payments", payment(next(n), 5, extra={"nested": [1, {"b": "}{"}], "s": "\"}"})))
    events.append(("identity", activation(next(n), 6, unknown="x", more=[None, True, 1.5e300])))
    events.append(("payments", payment(next(n), 7, amount_vnd=10**12, qr_payload=encode(BIN, "123", amount=10**12))))
    return events
