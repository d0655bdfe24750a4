"""The worker's Prometheus metrics (names and meanings: docs/metrics.md)."""
from __future__ import annotations

from collections import Counter as Counter_

from prometheus_client import Counter, Gauge, Histogram, Info

BUILD_INFO = Info("pulse_build", "Build information")
CONSUMED = Counter("pulse_events_consumed_total", "Messages read from the input topics", ["stream"])
ACCEPTED = Counter("pulse_events_accepted_total", "Valid events written to the raw tables", ["stream"])
DEADLETTERED = Counter(
    "pulse_events_deadlettered_total", "Messages sent to the dead-letter topic", ["stream", "reason"]
)
DUPLICATES = Counter("pulse_duplicates_dropped_total", "Events repeated within a batch", ["stream"])
LATE = Counter("pulse_late_events_total", "Accepted events behind the watermark", ["stream"])
TOO_LATE = Counter("pulse_too_late_events_total", "Events beyond the allowed lateness", ["stream"])
WATERMARK = Gauge("pulse_watermark_timestamp_seconds", "Event-time watermark", ["stream"])
WATERMARK_LAG = Gauge("pulse_watermark_lag_seconds", "Wall clock minus watermark", ["stream"])
LAG_MESSAGES = Gauge("pulse_consumer_lag_messages", "Log end minus committed offset", ["topic", "partition"])
LAG_SECONDS = Gauge(
    "pulse_consumer_lag_seconds", "Age of the last stored message while the partition has a backlog, else 0",
    ["topic", "partition"],
)
LAST_STORED_TIMESTAMP = Gauge(
    "pulse_last_stored_record_timestamp_seconds", "Kafka timestamp of the last stored message", ["topic", "partition"]
)
COMMITTED_OFFSET = Gauge("pulse_consumer_committed_offset", "Last stored offset", ["topic", "partition"])
LOG_END_OFFSET = Gauge("pulse_log_end_offset", "Broker log end offset", ["topic", "partition"])
SINK_ROWS = Counter("pulse_sink_rows_written_total", "Rows inserted into ClickHouse", ["table"])
SINK_BATCH_SECONDS = Histogram(
    "pulse_sink_batch_duration_seconds", "Duration of one sink flush",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SINK_FAILURES = Counter("pulse_sink_failures_total", "Failed sink flush attempts")
SINK_BUFFERED = Gauge("pulse_sink_buffered_rows", "Rows waiting to be written")
SINK_BUFFER_LIMIT = Gauge("pulse_sink_buffer_limit_rows", "Bound of the sink buffer")
SINK_LAST_SUCCESS = Gauge("pulse_sink_last_success_timestamp_seconds", "Time of the last successful flush")
FRESHNESS = Histogram(
    "pulse_event_freshness_seconds", "Kafka message timestamp to its window row in ClickHouse",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
WINDOW_ROWS = Counter("pulse_window_rows_emitted_total", "Window rows written and published", ["table"])
PROVINCE_PAYMENTS = Counter("pulse_province_payments_total", "Accepted payments", ["province"])
PROVINCE_AMOUNT = Counter("pulse_province_payment_amount_vnd_total", "Value of successful payments", ["province"])
PROVINCE_SUBMITTED = Counter(
    "pulse_province_dossiers_submitted_total", "Dossiers submitted", ["province", "channel"]
)
PROVINCE_COMPLETED = Counter("pulse_province_dossiers_completed_total", "Dossiers returned", ["province"])
PROVINCE_COMPLETED_LATE = Counter(
    "pulse_province_dossiers_completed_late_total", "Dossiers returned after their due time", ["province"]
)
PROVINCE_ACTIVATIONS = Counter("pulse_province_id_activations_total", "VNeID activations", ["province"])


def count_by_province(events_by_stream: dict[str, list]) -> None:
    """The per-province business counters, aggregated per batch (one label lookup per province, not per event)."""
    payments: Counter_ = Counter_()
    amounts: Counter_ = Counter_()
    for event in events_by_stream.get("payments", ()):
        payments[event.province_code] += 1
        if event.status == "success":
            amounts[event.province_code] += event.amount_vnd
    submitted: Counter_ = Counter_()
    completed: Counter_ = Counter_()
    completed_late: Counter_ = Counter_()
    for event in events_by_stream.get("dossiers", ()):
        if event.stage == "submitted":
            submitted[(event.province_code, event.channel)] += 1
        elif event.stage == "returned":
            completed[event.province_code] += 1
            completed_late[event.province_code] += event.event_time > event.due_time
    activations = Counter_(event.province_code for event in events_by_stream.get("identity", ()))
    for counts, metric in ((payments, PROVINCE_PAYMENTS), (amounts, PROVINCE_AMOUNT), (completed, PROVINCE_COMPLETED),
                           (completed_late, PROVINCE_COMPLETED_LATE), (activations, PROVINCE_ACTIVATIONS)):
        for province, value in counts.items():
            metric.labels(province).inc(value)
    for (province, channel), value in submitted.items():
        PROVINCE_SUBMITTED.labels(province, channel).inc(value)
    for code in completed:  # a province with completions but none late still exposes a zero series
        PROVINCE_COMPLETED_LATE.labels(code)
