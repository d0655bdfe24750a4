"""The pipeline core against a real embedded ClickHouse (no Kafka): skipping, lateness, dedup, windows."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from sinks.sink import ClickHouseSink
from streams.pipeline import Message, Pipeline
from tests.support.messages import activation

TOPIC = "pulse.identity.activations"


def pipeline(sink: ClickHouseSink) -> Pipeline:
    # One event sets the watermark in these lateness tests; the quorum rule has its own (test_event_time.py).
    return Pipeline(sink, {TOPIC: "identity"}, lateness_s=600, max_message_bytes=10_000, watermark_quorum=1)


def messages(values: list[bytes], partition: int = 0, first_offset: int = 0) -> list[Message]:
    return [Message(TOPIC, partition, first_offset + n, b"k", v, 0.0) for n, v in enumerate(values)]


def activations_1m(sink: ClickHouseSink) -> dict[tuple[str, str], tuple[int, int]]:
    with sink.transaction() as tx:
        rows = tx.client.query(
            "SELECT window_start, province_code, activations, level2_activations FROM pulse.id_activations_1m FINAL"
        ).result_rows
    return {(start.strftime("%H:%M"), code): (total, level2) for start, code, total, level2 in rows}


def test_windows_count_each_event_once_in_the_minute_of_its_event_time(sink: ClickHouseSink) -> None:
    first = activation("00:00:10", "01", level=2)
    values = [first, activation("00:00:50", "01"), activation("00:01:05", "95"), first]  # 95 -> 96; a duplicate
    outcome = pipeline(sink).process(messages(values))
    assert outcome.accepted == 3  # the identical copy is dropped (one event, one count), not stored again
    assert activations_1m(sink) == {("00:00", "01"): (2, 1), ("00:01", "96"): (1, 0)}
    published = {(row["table"], row["window_start"], row["province_code"]): row["activations"]
                 for row in outcome.window_rows}
    assert published[("id_activations_1m", datetime(2026, 1, 5, 0, 0, tzinfo=timezone.utc), "01")] == 2


def test_reprocessing_stored_offsets_changes_nothing(sink: ClickHouseSink) -> None:
    batch = messages([activation("00:00:10", "01"), activation("00:00:20", "01")])
    pipeline(sink).process(batch)
    again = pipeline(sink).process(batch + messages([activation("00:00:30", "01")], first_offset=2))
    assert again.skipped == 2 and again.accepted == 1
    assert activations_1m(sink) == {("00:00", "01"): (3, 0)}


def test_replay_of_the_same_events_at_new_offsets_changes_no_window(sink: ClickHouseSink) -> None:
    values = [activation("00:00:10", "01"), activation("00:00:20", "04")]
    pipeline(sink).process(messages(values))
    before = activations_1m(sink)
    pipeline(sink).process(messages(values, first_offset=100))
    assert activations_1m(sink) == before


def test_late_events_within_lateness_count_and_too_late_ones_are_dead_letters(sink: ClickHouseSink) -> None:
    values = [activation("01:00:00", "01"), activation("00:55:00", "01"), activation("00:40:00", "01")]
    outcome = pipeline(sink).process(messages(values))
    assert [record.reason for _, record in outcome.dead_letters] == ["too_late"]
    assert activations_1m(sink) == {("01:00", "01"): (1, 0), ("00:55", "01"): (1, 0)}


def test_watermark_survives_a_restart(sink: ClickHouseSink) -> None:
    pipeline(sink).process(messages([activation("01:00:00", "01")]))
    outcome = pipeline(sink).process(messages([activation("00:30:00", "01")], first_offset=1))
    assert [record.reason for _, record in outcome.dead_letters] == ["too_late"]


def test_bad_input_becomes_dead_letters_with_reasons_and_valid_events_survive(sink: ClickHouseSink) -> None:
    values = [b"{not json", b"x" * 20_000, json.dumps({"type": "id_activation"}).encode(),
              activation("00:00:10", "99"), activation("00:00:10", "01")]
    outcome = pipeline(sink).process(messages(values))
    reasons = [record.reason for _, record in outcome.dead_letters]
    assert reasons == ["malformed_json", "too_large", "invalid", "unknown_province"]
    assert all(record.error for _, record in outcome.dead_letters)
    assert activations_1m(sink) == {("00:00", "01"): (1, 0)}
    with sink.transaction() as tx:
        stored = tx.client.query("SELECT reason, offset FROM pulse.dead_letters FINAL ORDER BY offset").result_rows
    assert stored == [("malformed_json", 0), ("too_large", 1), ("invalid", 2), ("unknown_province", 3)]


def test_business_counters_by_province(sink: ClickHouseSink) -> None:
    from prometheus_client import REGISTRY

    def activations(code: str) -> float:
        return REGISTRY.get_sample_value("pulse_province_id_activations_total", {"province": code}) or 0.0

    before = activations("96")
    pipeline(sink).process(messages([activation("00:00:10", "96"), activation("00:00:11", "95")]))
    assert activations("96") == before + 2  # the legacy code 95 counts under Cà Mau


def test_windows_count_activated_accounts_only(sink: ClickHouseSink) -> None:
    def at_step(clock: str, step: str | None, level: int = 2) -> bytes:
        event = json.loads(activation(clock, "01", level=level))
        if step is not None:
            event["step"] = step
        return json.dumps(event).encode()

    values = [at_step("00:00:10", "registered"), at_step("00:00:20", "approved"), at_step("00:00:30", "activated"),
              at_step("00:00:40", None, level=1)]  # no step: an older producer's activation
    assert pipeline(sink).process(messages(values)).accepted == 4
    assert activations_1m(sink) == {("00:00", "01"): (2, 1)}


def test_aiokafka_records_are_processed_as_they_are_with_their_millisecond_timestamps(sink: ClickHouseSink) -> None:
    """The worker hands aiokafka's ConsumerRecords to the pipeline without copying them into Messages; their
    timestamps are Kafka's milliseconds, and the batch's freshness is read from them in seconds."""
    from aiokafka.structs import ConsumerRecord
    from prometheus_client import REGISTRY

    def freshness() -> tuple[float, float]:
        return (REGISTRY.get_sample_value("pulse_event_freshness_seconds_sum") or 0.0,
                REGISTRY.get_sample_value("pulse_event_freshness_seconds_count") or 0.0)

    sent_ms = int((time.time() - 120) * 1000)  # two minutes ago, the oldest of the batch
    values = [activation("00:00:10", "01", level=2), activation("00:00:50", "01"), b"{not json"]
    records = [ConsumerRecord(TOPIC, 1, 40 + n, sent_ms + 5_000 * n, 0, b"k", v, None, 1, len(v), ())
               for n, v in enumerate(values)]
    (total, count) = freshness()
    outcome = pipeline(sink).process(records)
    assert outcome.accepted == 2 and outcome.skipped == 0
    assert [(record.partition, record.offset, record.reason) for _, record in outcome.dead_letters] == [
        (1, 42, "malformed_json")]
    assert activations_1m(sink) == {("00:00", "01"): (2, 1)}
    (after_total, after_count) = freshness()
    assert after_count == count + 1
    assert 120 <= after_total - total < 180  # seconds since the oldest record's timestamp, not milliseconds
    again = pipeline(sink).process(records)  # stored offsets are skipped, whatever the record type
    assert again.skipped == 3 and again.accepted == 0
