"""Lag in seconds is measured on Kafka message timestamps (issue 11): with messages waiting behind a sink
outage, `pulse_consumer_lag_seconds` is the age of the last stored message, not a backlog ÷ rate estimate,
and `pulse_last_stored_record_timestamp_seconds` is that message's timestamp. Real broker, real worker."""
from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from kafka import KafkaProducer

from pulse.settings import TOPIC_PAYMENTS
from tests.support.services import PulseEnv, WorkerProcess, wait_for

PARTITION = 0
AGE_S = 300  # the first messages are stamped this long ago
LABELS = f'{{partition="{PARTITION}",topic="{TOPIC_PAYMENTS}"}}'


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None  # not serving yet
    for line in text.splitlines():
        if line.startswith(name + LABELS + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _close(value: float | None, expected: float) -> bool:
    """Equal to Kafka's millisecond precision."""
    return value is not None and abs(value - expected) < 0.002


def _produce(env: PulseEnv, values: list[bytes], timestamp_s: float) -> None:
    producer = KafkaProducer(bootstrap_servers=env.bootstrap, acks="all")
    try:
        for value in values:
            producer.send(TOPIC_PAYMENTS, value=value, partition=PARTITION, timestamp_ms=round(timestamp_s * 1000))
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def _payments(env: PulseEnv, tmp_path: Path, count: int) -> list[bytes]:
    out = tmp_path / f"payments-{count}.jsonl"
    env.pulse("simulate", "--events", str(count), "--start", "now", "--out", str(out), "--metrics-port", "0")
    return [line.encode() for line in out.read_text().splitlines() if '"type":"payment"' in line][:count]


def test_lag_seconds_is_the_age_of_the_last_stored_message(pulse_env: PulseEnv, tmp_path: Path,
                                                           free_port: int) -> None:
    outage = pulse_env.state_dir / "clickhouse-down"
    outage.parent.mkdir(parents=True, exist_ok=True)
    pulse_env.extra.update(PULSE_SINK_OUTAGE_FLAG=str(outage), PULSE_METRICS_PORT=str(free_port),
                           PULSE_SINK_RETRY_MAX_S="1")
    values = _payments(pulse_env, tmp_path, 40)
    assert len(values) >= 20, "the simulator gave too few payments"
    stamped = round(time.time() - AGE_S, 3)
    _produce(pulse_env, values[:10], stamped)
    worker = WorkerProcess(pulse_env, log_name="lag-seconds-worker")
    try:
        pulse_env.wait_until_stored(timeout_s=120)
        wait_for(lambda: _close(_metric(free_port, "pulse_last_stored_record_timestamp_seconds"), stamped), 30,
                 "the timestamp of the last stored message")
        wait_for(lambda: _metric(free_port, "pulse_consumer_lag_seconds") == 0.0, 30, "lag 0 without backlog")

        outage.touch()  # the next messages wait: the stored data stays as old as the first ones
        _produce(pulse_env, values[10:], time.time())
        wait_for(lambda: (_metric(free_port, "pulse_consumer_lag_messages") or 0) > 0, 60, "a backlog")
        wait_for(lambda: (_metric(free_port, "pulse_consumer_lag_seconds") or 0) >= AGE_S, 30,
                 "lag in seconds to reach the age of the last stored message")
        lag = _metric(free_port, "pulse_consumer_lag_seconds")
        assert lag is not None and AGE_S <= lag <= time.time() - stamped + 1, lag
        assert _close(_metric(free_port, "pulse_last_stored_record_timestamp_seconds"), stamped)

        outage.unlink()
        pulse_env.wait_until_stored(timeout_s=120)
        wait_for(lambda: _metric(free_port, "pulse_consumer_lag_seconds") == 0.0, 30, "lag 0 after catching up")
        last = _metric(free_port, "pulse_last_stored_record_timestamp_seconds")
        assert last is not None and last > stamped + AGE_S - 60, "the newest stored message is the fresh one"
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
