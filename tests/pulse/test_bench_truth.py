"""The bench's own checks: exact per-event freshness and window-by-window correctness (no Kafka needed)."""
from __future__ import annotations

import orjson
import pytest

from pulse.bench import BenchError, SustainedOptions, WindowTruth, freshness_delays, step_held


def test_freshness_pairs_each_stored_row_with_its_own_record() -> None:
    # Stored out of send order (four partitions flushed in any order): pairing by event_id is still exact.
    sent = {"a": 1_000, "b": 1_010, "c": 1_020}
    visible = {"c": 1_500, "a": 1_900, "b": 1_300}
    assert sorted(freshness_delays(sent, visible)) == [0.29, 0.48, 0.9]


def test_freshness_refuses_a_row_visible_before_its_record_was_sent() -> None:
    with pytest.raises(BenchError, match="before it was sent"):
        freshness_delays({"a": 2_000}, {"a": 1_999})


def test_freshness_refuses_a_row_no_record_of_the_phase_explains() -> None:
    with pytest.raises(BenchError, match="never sent"):
        freshness_delays({"a": 2_000}, {"b": 2_100})


def _payment(event_id: str, minute: int, province: str = "01", amount: int = 100, status: str = "success") -> bytes:
    return orjson.dumps({"type": "payment", "event_id": event_id, "event_time": f"2026-01-05T00:{minute:02d}:10+00:00",
                         "province_code": province, "amount_vnd": amount, "status": status})


def _truth_of(*values: bytes) -> WindowTruth:
    truth = WindowTruth()
    for value in values:
        truth.add(value)
    return truth


def test_window_truth_counts_first_copies_and_expects_malformed_dead_letters() -> None:
    truth = _truth_of(_payment("e1", 1), _payment("e1", 1), _payment("e2", 1, status="failed"), b'{"type":"pay')
    key = ("payments_1m", 1767571260, "01")
    assert dict(truth.rows) == {key: {"tx_count": 2, "success_count": 1, "amount_vnd": 100, "version": 2}}
    assert truth.dead_letters == {"malformed_json": 1}
    assert truth.counted == 2


def test_window_differences_catch_a_measure_a_minute_or_a_province_gone_wrong() -> None:
    truth = _truth_of(_payment("e1", 1), _payment("e2", 2, province="79", amount=7))
    right = {key: dict(row) for key, row in truth.rows.items()}
    assert truth.differences(right) == []
    swapped = {key: dict(row) for key, row in right.items()}
    first = ("payments_1m", 1767571260, "01")
    swapped[first]["success_count"], swapped[first]["tx_count"] = 0, 2  # a sum that stays the same
    assert truth.differences(swapped)
    moved = {(table, minute + 60, province): row for (table, minute, province), row in right.items()}
    assert len(truth.differences(moved)) == 4  # every row missing where it belongs and extra where it is not
    elsewhere = {(table, minute, "48"): row for (table, minute, province), row in right.items()}
    assert truth.differences(elsewhere)


def test_a_sustained_step_holds_only_with_the_rate_offered_and_the_lag_bounded() -> None:
    options = SustainedOptions(step_s=60.0, lag_bound_s=5.0)
    steady = [(t, 3_000) for t in range(0, 60, 2)]
    assert step_held(4_000.0, 3_990.0, steady, options) == (True, 3_000)
    # A backlog early in the step that the worker works off does not count against it...
    assert step_held(4_000.0, 3_990.0, [(1, 50_000), *steady[1:]], options)[0]
    # ...a lag still growing in the second half does,
    growing = [(t, t * 1_000) for t in range(0, 60, 2)]
    assert step_held(4_000.0, 3_990.0, growing, options) == (False, 58_000)
    # and a rate the producer could not offer gives no verdict that the worker held it.
    assert not step_held(4_000.0, 3_000.0, steady, options)[0]
