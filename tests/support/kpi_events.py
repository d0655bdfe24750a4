"""A small hand-written event set whose kpi_daily rows were computed by hand (tests/pulse/test_kpi_daily.py).

Two local days in Asia/Ho_Chi_Minh, D1 = 2026-03-02 and D2 = 2026-03-03, provinces 01 (Hà Nội) and 79
(TP Hồ Chí Minh). Several events fall before 07:00 local time, so their UTC date is the day before.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from schemas.vietqr import encode

BANK_BIN = "970436"
_NAMESPACE = uuid.UUID("8d5f3c1e-2b7a-4c9d-9e0f-1a2b3c4d5e6f")


def _id(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


def dossier(name: str, dossier_id: str, at: str, stage: str, *, province: str = "01", channel: str = "online",
            due: str, vneid: bool = False, fee: int = 0, paid_online: bool = False, electronic: bool = False,
            rating: int | None = None) -> dict:
    event = {
        "type": "dossier", "event_id": _id(name), "event_time": at, "province_code": province,
        "dossier_id": dossier_id, "procedure_code": "1.000003", "full_process": True, "channel": channel,
        "stage": stage, "due_time": due, "paid_online": paid_online, "vneid_authenticated": vneid,
        "sector": "agriculture", "fee_vnd": fee, "result_electronic": electronic,
    }
    if rating is not None:
        event["rating"] = rating
    return event


def payment(name: str, at: str, status: str, *, province: str = "01", category: str = "market") -> dict:
    amount = 45_000
    return {
        "type": "payment", "event_id": _id(name), "event_time": at, "province_code": province,
        "market_id": "M1", "merchant_id": "S1", "payer_bank_bin": BANK_BIN, "payee_bank_bin": BANK_BIN,
        "amount_vnd": amount, "channel": "vietqr_dynamic", "status": status,
        "qr_payload": encode(BANK_BIN, "0011001234567", amount=amount), "category": category,
    }


def activation(name: str, at: str, step: str, level: int, *, province: str = "01") -> dict:
    return {
        "type": "id_activation", "event_id": _id(name), "event_time": at, "province_code": province,
        "citizen_ref": hashlib.sha256(name.encode()).hexdigest(), "level": level,
        "method": "police_station" if step == "registered" and level == 2 else "self_service",
        "age_band": "25-34", "step": step,
    }


def hand_events() -> list[dict]:
    d1_due = "2026-03-02T16:00:00+07:00"
    events = [
        # d1: online with VNeID, submitted 06:30 local (23:30 UTC on 1 March); returned on time with a fee paid
        # online and an electronic result; rated 5.
        dossier("d1-sub", "d1", "2026-03-02T06:30:00+07:00", "submitted", due=d1_due, vneid=True, fee=50_000),
        dossier("d1-ret", "d1", "2026-03-02T15:00:00+07:00", "returned", due=d1_due, vneid=True, fee=50_000,
                paid_online=True, electronic=True),
        dossier("d1-rate", "d1", "2026-03-02T20:00:00+07:00", "rated", due=d1_due, vneid=True, fee=50_000,
                rating=5),
        # d2: at the counter, due at 11:00 the same day, never returned: overdue while open on D1 and D2.
        dossier("d2-sub", "d2", "2026-03-02T09:00:00+07:00", "submitted", channel="offline",
                due="2026-03-02T11:00:00+07:00"),
        dossier("d2-acc", "d2", "2026-03-02T09:30:00+07:00", "accepted", channel="offline",
                due="2026-03-02T11:00:00+07:00"),
        # d3: online without VNeID, no fee; returned on time on D2 at 08:00 local (01:00 UTC); rated 3.
        dossier("d3-sub", "d3", "2026-03-02T10:00:00+07:00", "submitted", due="2026-03-05T17:00:00+07:00"),
        dossier("d3-ret", "d3", "2026-03-03T08:00:00+07:00", "returned", due="2026-03-05T17:00:00+07:00"),
        dossier("d3-rate", "d3", "2026-03-03T09:00:00+07:00", "rated", due="2026-03-05T17:00:00+07:00", rating=3),
        # d4: online with VNeID, submitted at 01:00 local on D2 (18:00 UTC on D1); returned late, fee not paid
        # online, electronic result.
        dossier("d4-sub", "d4", "2026-03-03T01:00:00+07:00", "submitted", due="2026-03-03T10:00:00+07:00",
                vneid=True, fee=20_000),
        dossier("d4-ret", "d4", "2026-03-03T14:00:00+07:00", "returned", due="2026-03-03T10:00:00+07:00",
                vneid=True, fee=20_000, electronic=True),
        # d5: online with VNeID, withdrawn on D2.
        dossier("d5-sub", "d5", "2026-03-02T14:00:00+07:00", "submitted", due="2026-03-04T17:00:00+07:00",
                vneid=True),
        dossier("d5-wd", "d5", "2026-03-03T09:00:00+07:00", "withdrawn", due="2026-03-04T17:00:00+07:00",
                vneid=True),
        # d6: at the counter, rejected the same afternoon.
        dossier("d6-sub", "d6", "2026-03-02T15:00:00+07:00", "submitted", channel="offline",
                due="2026-03-02T15:30:00+07:00"),
        dossier("d6-rej", "d6", "2026-03-02T16:00:00+07:00", "rejected", channel="offline",
                due="2026-03-02T15:30:00+07:00"),
        # d7 in province 79: online, no VNeID, open and not yet due.
        dossier("d7-sub", "d7", "2026-03-02T12:00:00+07:00", "submitted", province="79",
                due="2026-03-20T17:00:00+07:00"),
        # Payments in 01: D1 two successes (one at 05:00 local = 22:00 UTC on 1 March) and a failure; D2 one.
        payment("p1", "2026-03-02T05:00:00+07:00", "success"),
        payment("p2", "2026-03-02T12:00:00+07:00", "failed", category="utility"),
        payment("p3", "2026-03-02T18:00:00+07:00", "success", category="tuition"),
        payment("p4", "2026-03-03T06:00:00+07:00", "success", category="hospital"),
        # VNeID in 01: D1 one level-2 lifecycle (registered, approved, activated) and a level-1 activation at
        # 06:00 local (23:00 UTC on 1 March); D2 only a registration (no activation: value NULL).
        activation("a1-reg", "2026-03-02T06:00:00+07:00", "registered", 2),
        activation("a2-act", "2026-03-02T06:10:00+07:00", "activated", 1),
        activation("a1-apr", "2026-03-02T11:00:00+07:00", "approved", 2),
        activation("a1-act", "2026-03-02T19:00:00+07:00", "activated", 2),
        activation("a3-reg", "2026-03-03T10:00:00+07:00", "registered", 1),
    ]
    duplicates = [events[0], events[15]]  # delivered twice: counted once
    return sorted(events + duplicates, key=lambda e: e["event_time"])


# (day, province, kpi) -> (numerator, denominator), computed by hand from the comments above.
OFFERED_01, ELIGIBLE = 955, 1100  # schemas/data/procedure_offers.csv (01) and procedures.csv (eligible = 1)
OFFERED_79 = 675
EXPECTED: dict[tuple[str, str, str], tuple[int, int]] = {
    # 01, D1: submitted d1 d2 d3 d5 d6 (online d1 d3 d5; with VNeID d1 d5); returned d1; rated d1 (5).
    ("2026-03-02", "01", "online_dossier_rate"): (3, 5),
    ("2026-03-02", "01", "vneid_auth_rate"): (2, 3),
    ("2026-03-02", "01", "on_time_rate"): (1, 1),
    ("2026-03-02", "01", "online_payment_rate"): (1, 1),
    ("2026-03-02", "01", "electronic_result_rate"): (1, 1),
    ("2026-03-02", "01", "satisfaction_rate"): (1, 1),
    ("2026-03-02", "01", "qr_success_rate"): (2, 3),
    ("2026-03-02", "01", "vneid_level2_share"): (1, 2),
    # open at the end of D1: d2 (overdue), d3, d5; d1 and d6 closed, d4 not yet submitted.
    ("2026-03-02", "01", "overdue_open"): (1, 3),
    ("2026-03-02", "01", "full_process_offer_rate"): (OFFERED_01, ELIGIBLE),
    # 01, D2: submitted d4 (online, VNeID); returned d3 (on time, no fee) and d4 (late, fee not paid online,
    # electronic); rated d3 (3); one payment, one registration only.
    ("2026-03-03", "01", "online_dossier_rate"): (1, 1),
    ("2026-03-03", "01", "vneid_auth_rate"): (1, 1),
    ("2026-03-03", "01", "on_time_rate"): (1, 2),
    ("2026-03-03", "01", "online_payment_rate"): (0, 1),
    ("2026-03-03", "01", "electronic_result_rate"): (1, 2),
    ("2026-03-03", "01", "satisfaction_rate"): (0, 1),
    ("2026-03-03", "01", "qr_success_rate"): (1, 1),
    ("2026-03-03", "01", "vneid_level2_share"): (0, 0),
    # open at the end of D2: d2 only (overdue); d3, d4 returned and d5 withdrawn on D2.
    ("2026-03-03", "01", "overdue_open"): (1, 1),
    ("2026-03-03", "01", "full_process_offer_rate"): (OFFERED_01, ELIGIBLE),
    # 79, D1: d7 submitted online without VNeID; nothing returned or rated.
    ("2026-03-02", "79", "online_dossier_rate"): (1, 1),
    ("2026-03-02", "79", "vneid_auth_rate"): (0, 1),
    ("2026-03-02", "79", "on_time_rate"): (0, 0),
    ("2026-03-02", "79", "online_payment_rate"): (0, 0),
    ("2026-03-02", "79", "electronic_result_rate"): (0, 0),
    ("2026-03-02", "79", "satisfaction_rate"): (0, 0),
    ("2026-03-02", "79", "overdue_open"): (0, 1),
    ("2026-03-02", "79", "full_process_offer_rate"): (OFFERED_79, ELIGIBLE),
    # 79, D2: d7 still open (the latest day with dossier events is D2), not yet due.
    ("2026-03-03", "79", "overdue_open"): (0, 1),
}


def store_through_pipeline(sink) -> int:  # sinks.sink.ClickHouseSink (kept out of imports
    """Store hand_events() with the pipeline core (no Kafka), as the worker would; returns events accepted."""
    from streams.pipeline import Message, Pipeline

    topics = {"payment": "pulse.payments.vietqr", "dossier": "pulse.dossiers.events",
              "id_activation": "pulse.identity.activations"}
    streams = dict(zip(topics.values(), ("payments", "dossiers", "identity")))
    offsets: dict[str, int] = {}
    messages = []
    for event in hand_events():
        topic = topics[event["type"]]
        offsets[topic] = offsets.get(topic, -1) + 1
        messages.append(Message(topic, 0, offsets[topic], b"k", json.dumps(event).encode(), 0.0))
    return Pipeline(sink, streams, lateness_s=600, max_message_bytes=100_000).process(messages).accepted


def write_jsonl(path: Path) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in hand_events()), encoding="utf-8")
    return path
