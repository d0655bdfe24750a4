"""Event-time rules of the pipeline against a real embedded ClickHouse (no Kafka), with the worker's clock
injected: the future bound, the watermark a skewed clock cannot drag, idle partitions, and one count per
event_id with the first stored copy winning (README, "Event time")."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from sinks.sink import ClickHouseSink
from streams.pipeline import Message, Outcome, Pipeline

TOPIC = "pulse.identity.activations"
CLOCK = datetime(2026, 1, 5, 1, 0, tzinfo=timezone.utc)  # the worker's clock in every test here
LATENESS_S = 600
MAX_FUTURE_S = 300
QUORUM = 3


def pipeline(sink: ClickHouseSink, clock: datetime = CLOCK) -> Pipeline:
    return Pipeline(sink, {TOPIC: "identity"}, lateness_s=LATENESS_S, max_message_bytes=10_000,
                    max_future_s=MAX_FUTURE_S, watermark_quorum=QUORUM, now=clock.timestamp)


def activation(offset_s: float, province: str = "01", level: int = 1, event_id: str | None = None,
               utc_offset: str = "+00:00") -> bytes:
    """An id_activation `offset_s` seconds from CLOCK (negative: in the past)."""
    moment = CLOCK + timedelta(seconds=offset_s)
    if utc_offset == "+07:00":
        moment = moment.astimezone(timezone(timedelta(hours=7)))
    return json.dumps({
        "type": "id_activation", "event_id": event_id or str(uuid.uuid4()),
        "event_time": moment.isoformat(timespec="milliseconds").replace("+00:00", utc_offset),
        "province_code": province, "citizen_ref": "ab" * 32, "level": level,
        "method": "police_station" if level == 2 else "self_service", "age_band": "25-34",
    }).encode()


class Feed:
    """Offsets per partition, continued across batches as Kafka would."""

    def __init__(self) -> None:
        self.next_offset: dict[int, int] = {}

    def __call__(self, values: list[bytes], partition: int = 0) -> list[Message]:
        first = self.next_offset.get(partition, 0)
        self.next_offset[partition] = first + len(values)
        return [Message(TOPIC, partition, first + n, b"k", value, 0.0) for n, value in enumerate(values)]


def reasons(outcome: Outcome) -> list[str]:
    return [record.reason for _, record in outcome.dead_letters]


def query(sink: ClickHouseSink, sql: str) -> list[tuple]:
    with sink.transaction() as tx:
        return tx.client.query(sql).result_rows


def watermarks(sink: ClickHouseSink) -> dict[int, datetime]:
    rows = query(sink, "SELECT partition, watermark FROM pulse.stream_offsets FINAL")
    return {partition: moment.replace(tzinfo=timezone.utc) for partition, moment in rows}


def activations_per_minute(sink: ClickHouseSink) -> dict[str, int]:
    rows = query(sink, "SELECT window_start, sum(activations) FROM pulse.id_activations_1m FINAL GROUP BY window_start")
    return {start.strftime("%H:%M"): total for start, total in rows}


# -- the future bound and the watermark --------------------------------------------------------------------

def around(offset_s: float, count: int = QUORUM) -> list[bytes]:
    """`count` events, one second apart, ending `offset_s` from CLOCK: enough to set a watermark."""
    return [activation(offset_s - count + 1 + n) for n in range(count)]


def test_future_bound_is_exact(sink: ClickHouseSink) -> None:
    at_bound = [activation(MAX_FUTURE_S) for _ in range(QUORUM)]
    outcome = pipeline(sink).process(Feed()([*at_bound, activation(MAX_FUTURE_S + 1), *at_bound]))
    assert reasons(outcome) == ["future_time"]
    assert "more than 300 s ahead of the worker's clock" in outcome.dead_letters[0][1].error
    assert outcome.accepted == QUORUM
    assert watermarks(sink) == {0: CLOCK + timedelta(seconds=MAX_FUTURE_S)}


def test_copies_of_one_event_do_not_make_a_quorum(sink: ClickHouseSink) -> None:
    copies = [activation(-100, event_id=str(uuid.UUID(int=7)))] * 5
    outcome = pipeline(sink).process(Feed()([activation(-1000), *copies]))
    assert outcome.accepted == 2 and reasons(outcome) == []
    assert watermarks(sink) == {0: datetime(1970, 1, 1, tzinfo=timezone.utc)}  # two events seen: no watermark yet


def test_one_event_two_days_ahead_costs_no_honest_event(sink: ClickHouseSink) -> None:
    honest = [activation(-3000 + 10 * n) for n in range(300)]  # the last 50 minutes, in order
    outcome = pipeline(sink).process(Feed()(honest[:100] + [activation(2 * 86400)] + honest[100:]))
    assert reasons(outcome) == ["future_time"]
    assert outcome.accepted == 300
    assert watermarks(sink) == {0: CLOCK + timedelta(seconds=-3000 + 10 * (300 - QUORUM))}


def test_a_burst_of_skewed_events_moves_no_watermark_across_batches(sink: ClickHouseSink) -> None:
    feed = Feed()
    first = pipeline(sink).process(feed([*around(-1200), *[activation(86400 + n) for n in range(50)]]))
    assert reasons(first) == ["future_time"] * 50
    # A restarted worker (new pipeline) reads the stored watermark: still that of the honest events.
    later = pipeline(sink).process(feed([activation(-1700), activation(-1900)]))
    assert reasons(later) == ["too_late"]  # -1900 is 698 s behind -1202; -1700 is 498 s behind
    assert watermarks(sink) == {0: CLOCK - timedelta(seconds=1202)}


def test_a_skewed_clock_within_the_bound_holds_the_watermark_at_most_that_far_ahead(sink: ClickHouseSink) -> None:
    # Events up to MAX_FUTURE_S ahead are taken (a clock a few minutes fast is normal), so the watermark can
    # lead the worker's clock by that much, never more: every event younger than LATENESS_S - MAX_FUTURE_S
    # (here 300 s) is therefore accepted whatever other clocks say.
    outcome = pipeline(sink).process(Feed()([*[activation(250 + n) for n in range(10)], activation(-290),
                                             activation(-360)]))
    assert watermarks(sink) == {0: CLOCK + timedelta(seconds=257)}  # the third highest
    assert reasons(outcome) == ["too_late"]  # -360 is 617 s behind 257; -290 is 547 s behind
    assert outcome.accepted == 11


def test_in_a_replay_of_history_fewer_outliers_than_the_quorum_move_no_watermark(sink: ClickHouseSink) -> None:
    # A year-old file: two events stamped two days ahead are still in the past for the worker's clock.
    year_ago = -365 * 86400
    honest = [activation(year_ago + 10 * n) for n in range(100)]
    outliers = [activation(year_ago + 2 * 86400), activation(year_ago + 2 * 86400 + 5)]
    outcome = pipeline(sink).process(Feed()(honest[:10] + outliers + honest[10:]))
    assert reasons(outcome) == [] and outcome.accepted == 102
    assert watermarks(sink) == {0: CLOCK + timedelta(seconds=year_ago + 10 * 99)}
    # As many outliers as the quorum do agree, and lead the watermark (the limit of the rule, documented).
    burst = pipeline(sink).process(Feed()([*[activation(year_ago + 2 * 86400 + n) for n in range(QUORUM)],
                                           *honest[:2]], partition=1))
    assert reasons(burst) == ["too_late"] * 2


def test_an_idle_partition_keeps_its_own_watermark(sink: ClickHouseSink) -> None:
    feed = Feed()
    pipeline(sink).process(feed(around(-3600), partition=1))
    pipeline(sink).process(feed(around(-60), partition=0))  # partition 1 receives nothing for an hour
    outcome = pipeline(sink).process(feed([activation(-3500)], partition=1) + feed([activation(-3500)], partition=0))
    assert [(record.partition, record.reason) for _, record in outcome.dead_letters] == [(0, "too_late")]
    # The leaders are stored with the watermark: each restarted pipeline goes on exactly (-3602 drops out).
    assert watermarks(sink) == {0: CLOCK - timedelta(seconds=62), 1: CLOCK - timedelta(seconds=3601)}


def test_replay_of_old_data_is_not_in_the_future(sink: ClickHouseSink) -> None:
    outcome = pipeline(sink).process(Feed()([activation(-400 * 86400), activation(-399 * 86400)]))
    assert reasons(outcome) == [] and outcome.accepted == 2


# -- one event, one count ----------------------------------------------------------------------------------

def test_a_restamped_copy_in_another_minute_is_a_conflicting_duplicate_and_the_stored_copy_wins(
        sink: ClickHouseSink) -> None:
    feed = Feed()
    key = str(uuid.uuid4())
    pipeline(sink).process(feed([activation(-600, event_id=key)]))
    outcome = pipeline(sink).process(feed([activation(-420, event_id=key)]))  # three minutes later
    assert reasons(outcome) == ["conflicting_duplicate"]
    record = outcome.dead_letters[0][1]
    assert '"event_time": "2026-01-05T00:53:00.000' in record.raw  # the rejected copy
    assert "first copy wins (stored)" in record.error and '"event_time":"2026-01-05 00:50:00.000"' in record.error
    assert activations_per_minute(sink) == {"00:50": 1}
    assert query(sink, "SELECT count() FROM pulse.id_activations FINAL") == [(1,)]


def test_a_copy_with_other_content_in_the_same_batch_loses_to_the_first(sink: ClickHouseSink) -> None:
    key = str(uuid.uuid4())
    outcome = pipeline(sink).process(Feed()([activation(-100, event_id=key, level=1),
                                             activation(-100, event_id=key, level=2),
                                             activation(-100, event_id=key, province="04")]))
    assert reasons(outcome) == ["conflicting_duplicate"] * 2
    assert all("earlier in this batch" in record.error and '"level":1' in record.error
               for _, record in outcome.dead_letters)
    assert query(sink, "SELECT province_code, level FROM pulse.id_activations FINAL") == [("01", 1)]


def test_identical_copies_stay_silent_across_batches_restarts_and_replays(sink: ClickHouseSink) -> None:
    values = [activation(-100 - n) for n in range(20)]
    first = pipeline(sink).process(Feed()(values))
    same_instant_other_offset = [activation(-100, event_id=json.loads(values[0])["event_id"], utc_offset="+07:00")]
    # A replay at new offsets on another partition, by a restarted worker, plus a copy written in +07:00.
    again = pipeline(sink).process(Feed()(values + same_instant_other_offset, partition=3))
    assert reasons(first) == reasons(again) == []
    assert (first.accepted, again.accepted) == (20, 0)
    assert query(sink, "SELECT count() FROM pulse.id_activations") == [(20,)]  # nothing stored twice
    assert activations_per_minute(sink) == {"00:58": 20}


def test_copies_stored_before_the_index_had_fingerprints_count_once(sink: ClickHouseSink) -> None:
    key = uuid.uuid4()
    pipeline(sink).process(Feed()([]))  # migrations applied
    query(sink, f"INSERT INTO pulse.event_index (stream, event_id, fingerprint, event_time, province_code) "
                f"VALUES ('identity', '{key}', 0, '2026-01-05 00:50:00', '01')")
    outcome = pipeline(sink).process(Feed()([activation(-420, event_id=str(key), level=2)]))
    assert reasons(outcome) == [] and outcome.accepted == 0  # first stored copy wins, silently


def test_messages_stored_before_a_crash_are_counted_again_as_themselves(sink: ClickHouseSink) -> None:
    # A worker killed after writing the raw rows and the index but before the progress: the next one reads
    # the same messages again. They are not copies: they count (once) and vote for the watermark as before.
    feed = Feed()
    batch = feed(around(-1000, count=5))
    pipeline(sink).process(batch)
    query(sink, "TRUNCATE TABLE pulse.stream_offsets")  # the progress row never got written
    again = pipeline(sink).process(batch + feed([activation(-1000 - LATENESS_S - 5)]))
    assert reasons(again) == ["too_late"] and again.accepted == 5
    assert watermarks(sink) == {0: CLOCK - timedelta(seconds=1002)}
    assert activations_per_minute(sink) == {"00:43": 5}
