"""What the sink stores for each accepted event, column by column (issue 14: Native column inserts).

The raw rows and event_index rows are built by attribute access and inserted column-oriented; these tests pin
the stored values (UTC instants to the millisecond, UUIDs as text, the masked account and never the payload,
absent optional fields as the column's default, ingested_at filled by the store at insert time)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from uuid import UUID

from schemas.events import EVENT_MODELS
from sinks.sink import ClickHouseSink, _millis, _uuid_texts
from streams.pipeline import Batch, CountedCopy, Message, Pipeline
from tests.support.kpi_events import activation, dossier, payment

TOPICS = {"pulse.payments.vietqr": "payments", "pulse.dossiers.events": "dossiers",
          "pulse.identity.activations": "identity"}
TOPIC_OF = {stream: topic for topic, stream in TOPICS.items()}
STREAM_OF_TYPE = {"payment": "payments", "dossier": "dossiers", "id_activation": "identity"}
ACCOUNT = "0011001234567"


def rows(sink: ClickHouseSink, sql: str) -> list[dict]:
    with sink.transaction() as tx:
        result = tx.client.query(sql)
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def store(sink: ClickHouseSink, events: list[dict]) -> None:
    offsets: dict[str, int] = {}
    messages = []
    for event in events:
        topic = TOPIC_OF[STREAM_OF_TYPE[event["type"]]]
        offsets[topic] = offsets.get(topic, -1) + 1
        messages.append(Message(topic, 3, 100 + offsets[topic], b"k", json.dumps(event).encode(), 0.0))
    outcome = Pipeline(sink, TOPICS, lateness_s=600, max_message_bytes=100_000).process(messages)
    assert outcome.accepted == len(events) and not outcome.dead_letters


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_each_raw_column_holds_the_events_value(sink: ClickHouseSink) -> None:
    # An offset other than UTC and microseconds: stored in UTC, truncated to the column's milliseconds.
    paid = payment("p1", "2026-03-02T06:30:15.123987+07:00", "success", province="79", category="tuition")
    rated = dossier("d1", "D-1", "2026-03-02T09:00:00.5+07:00", "rated", due="2026-03-05T16:00:00+07:00", rating=5,
                    fee=20_000, paid_online=True, electronic=True)
    submitted = dossier("d2", "D-2", "2026-03-02T02:00:00Z", "submitted", due="2026-03-05T16:00:00+07:00",
                        vneid=True)
    activated = activation("a1", "2026-03-02T01:02:03.004+00:00", "activated", 2, province="01")
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    store(sink, [paid, rated, submitted, activated])
    after = datetime.now(timezone.utc) + timedelta(seconds=1)

    [stored_payment] = rows(sink, "SELECT * FROM pulse.payments")
    ingested = stored_payment.pop("ingested_at").replace(tzinfo=timezone.utc)
    assert before <= ingested <= after  # the column's DEFAULT, filled by the store at insert time
    assert stored_payment["event_id"] == paid["event_id"]
    assert stored_payment["event_time"].replace(tzinfo=timezone.utc) == utc("2026-03-01 23:30:15.123")
    assert {k: v for k, v in stored_payment.items() if k not in ("event_id", "event_time")} == {
        "province_code": "79", "market_id": "M1", "merchant_id": "S1", "payer_bank_bin": "970436",
        "payee_bank_bin": "970436", "payee_account_masked": "*********4567", "amount_vnd": 45_000,
        "channel": "vietqr_dynamic", "status": "success", "category": "tuition",
    }
    assert ACCOUNT not in repr(stored_payment)

    dossiers = {row["dossier_id"]: row for row in rows(sink, "SELECT * EXCEPT ingested_at FROM pulse.dossier_events")}
    assert dossiers["D-1"]["rating"] == 5 and dossiers["D-2"]["rating"] == 0  # absent: the column's default
    assert dossiers["D-1"]["event_time"].replace(tzinfo=timezone.utc) == utc("2026-03-02 02:00:00.500")
    assert dossiers["D-1"]["due_time"].replace(tzinfo=timezone.utc) == utc("2026-03-05 09:00:00")
    assert {k: dossiers["D-1"][k] for k in ("fee_vnd", "paid_online", "result_electronic", "sector", "stage",
                                             "full_process", "vneid_authenticated", "channel")} == {
        "fee_vnd": 20_000, "paid_online": True, "result_electronic": True, "sector": "agriculture",
        "stage": "rated", "full_process": True, "vneid_authenticated": False, "channel": "online"}
    assert dossiers["D-2"]["vneid_authenticated"] is True and dossiers["D-2"]["fee_vnd"] == 0

    [stored_activation] = rows(sink, "SELECT * EXCEPT ingested_at FROM pulse.id_activations")
    assert stored_activation == {
        "event_id": activated["event_id"], "event_time": stored_activation["event_time"], "province_code": "01",
        "citizen_ref": activated["citizen_ref"], "level": 2, "method": "self_service", "age_band": "25-34",
        "step": "activated"}
    assert stored_activation["event_time"].replace(tzinfo=timezone.utc) == utc("2026-03-02 01:02:03.004")


def test_event_index_rows_carry_the_copy_and_its_origin(sink: ClickHouseSink) -> None:
    paid = payment("p2", "2026-03-02T06:30:15.999+07:00", "failed", province="79")
    store(sink, [paid])
    [row] = rows(sink, "SELECT * FROM pulse.event_index")
    assert row["stream"] == "payments" and row["event_id"] == UUID(paid["event_id"])
    assert row["fingerprint"] not in (0, 1) and row["province_code"] == "79"
    assert (row["topic"], row["partition"], row["offset"]) == ("pulse.payments.vietqr", 3, 100)
    assert row["event_time"].replace(tzinfo=timezone.utc) == utc("2026-03-01 23:30:15.999")
    unknown = [UUID(int=n) for n in range(1, 5001)]  # a batch-sized list: the ids travel as one parameter
    with sink.transaction() as tx:
        counted = tx.counted_copies("payments", [*unknown, UUID(paid["event_id"])])
        other_stream = tx.counted_copies("identity", [UUID(paid["event_id"])])
    assert counted == {UUID(paid["event_id"]): CountedCopy(row["fingerprint"], "pulse.payments.vietqr", 3, 100)}
    assert other_stream == {}


def test_the_sink_needs_only_attribute_access_to_the_fields(sink: ClickHouseSink) -> None:
    """Events need not be pydantic models (streams.decode may hand over other objects): the model's field names
    and `account_masked` are all the sink reads. The payload with the full account is never stored."""
    fields = dict(event_id=UUID("00000000-0000-4000-8000-000000000001"),
                  event_time=datetime(2026, 3, 2, 1, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=7))),
                  province_code="01", type="payment", market_id="M9", merchant_id="S9", payer_bank_bin="970436",
                  payee_bank_bin="970436", amount_vnd=7, channel="vietqr_static", status="success",
                  qr_payload=f"FULL-{ACCOUNT}", category="market")
    assert set(fields) == set(EVENT_MODELS["payments"].model_fields)
    event = SimpleNamespace(**fields, account_masked="*****4567")
    batch = Batch()
    batch.events["payments"].append(event)
    batch.copies["payments"].append(CountedCopy(42, "pulse.payments.vietqr", 0, 7))
    with sink.transaction() as tx:
        tx.write(batch)
    [row] = rows(sink, "SELECT * EXCEPT ingested_at FROM pulse.payments")
    assert row["event_id"] == "00000000-0000-4000-8000-000000000001"
    assert row["event_time"].replace(tzinfo=timezone.utc) == datetime(2026, 3, 1, 18, 0, 0, 250_000, timezone.utc)
    assert row["payee_account_masked"] == "*****4567" and ACCOUNT not in repr(row) and row["amount_vnd"] == 7
    [index] = rows(sink, "SELECT fingerprint, offset FROM pulse.event_index")
    assert index == {"fingerprint": 42, "offset": 7}


def test_each_lookup_sees_its_own_ids_only_and_survives_a_lost_session_table(sink: ClickHouseSink) -> None:
    """The lookup's ids go through a temporary table of the client's session: a second lookup must not find the
    first one's ids there, and a session that lost the table (a server's session timed out) must get a new one."""
    paid = payment("p3", "2026-03-02T06:30:15+07:00", "success", province="79")
    store(sink, [paid])
    stored, unknown = UUID(paid["event_id"]), UUID(int=7)
    with sink.transaction() as tx:
        [copy] = tx.counted_copies("payments", [stored, unknown]).values()
        assert tx.counted_copies("payments", [unknown]) == {}
        tx.client.command("DROP TEMPORARY TABLE pulse_lookup_ids")
        assert tx.counted_copies("payments", [unknown, stored]) == {stored: copy}
        assert tx.counted_copies("payments", []) == {}
    assert copy == CountedCopy(copy.fingerprint, "pulse.payments.vietqr", 3, 100)


def test_batch_conversions_equal_the_one_value_ones() -> None:
    """UUID texts and instants' milliseconds are built for a whole column at once; each value must be what str()
    and exact integer arithmetic give (truncated to the millisecond, any UTC offset)."""
    ids = [UUID(int=0), UUID(int=1), UUID("8d5f3c1e-2b7a-4c9d-9e0f-1a2b3c4d5e6f"), UUID(int=2**128 - 1)]
    assert _uuid_texts(ids) == [str(key).encode() for key in ids]
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    moments = [datetime(2026, 3, 2, 6, 30, 15, micro, tzinfo=timezone(timedelta(hours=hours, minutes=minutes)))
               for micro in (0, 999, 1_000, 123_987, 999_999) for hours, minutes in ((0, 0), (7, 0), (-9, -30))]
    moments += [datetime(2000, 1, 1, tzinfo=timezone.utc) - timedelta(microseconds=1),
                datetime(2099, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=14)))]
    assert _millis(moments) == [(moment - epoch) // timedelta(milliseconds=1) for moment in moments]
