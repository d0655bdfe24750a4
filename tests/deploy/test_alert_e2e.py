"""End to end through the monitoring stack: malformed messages on Kafka -> the real `pulse worker` counts
them as dead letters -> the real Prometheus (deploy/prometheus/rules/*.yml, evaluated every second)
fires PulseDeadLetterBurst -> the real Alertmanager, on deploy/alertmanager/alertmanager.yml.tmpl rendered by
deploy/alertmanager/render.sh exactly as in compose (PULSE_ALERT_WEBHOOK_URL / PULSE_ALERT_HEARTBEAT_URL pointing
at the webhook receiver this test runs on a free port) -> the receiver. Along the way: Prometheus scrapes itself
and Alertmanager, and the always-firing PulseWatchdog reaches the heartbeat URL and nothing else.

A second, fast test pushes alerts straight into the real Alertmanager to check the inhibit rules: a critical
alert on one topic silences the warning of the same alert on that topic only.

Before the burst, a cheap no-fire check: realistic traffic with a few dead letters (5% malformed) must
leave the alert inactive (neither pending nor firing).

Needs the Debian packages `prometheus` and `prometheus-alertmanager`; a missing binary is a failure,
never a skip. Everything started here is stopped with bounded waits (SIGTERM, 10 s, SIGKILL).
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer

from pulse.settings import TOPIC_PAYMENTS
from pulse.simulate import event_time_start
from tests.support.monitoring import (
    ALERTMANAGER_JOB,
    PROMETHEUS_JOB,
    STOP_WAIT_S,
    WORKER_JOB,
    Alertmanager,
    Prometheus,
    WebhookReceiver,
    free_port,
    prometheus_config,
    terminate,
    wait_until,
)
from tests.support.services import PulseEnv, WorkerProcess

ALERT = "PulseDeadLetterBurst"
RUNBOOK_ANCHOR = "#pulsedeadletterburst"
TARGET_UP_TIMEOUT_S = 60
FIRING_TIMEOUT_S = 120  # from the start of the burst until Prometheus reports the alert firing
WEBHOOK_TIMEOUT_S = 30  # from firing in Prometheus until the webhook got it (group_wait is 1s)
HEARTBEAT_TIMEOUT_S = 90  # Prometheus resends a firing alert every minute
BURST_RATE = 100  # malformed messages per second
BURST_MAX_S = FIRING_TIMEOUT_S + WEBHOOK_TIMEOUT_S
VALID_EVENTS = 400
VALID_RATE = 100


ALERTS_PATH = "/alerts"
HEARTBEAT_PATH = "/heartbeat"
WATCHDOG = "PulseWatchdog"


# --- fixtures: each stops what it started, whatever happens --------------------------------------

@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(paths=(ALERTS_PATH, HEARTBEAT_PATH))
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: WebhookReceiver) -> Iterator[Alertmanager]:
    manager = Alertmanager(tmp_path / "alertmanager", webhook_url=webhook.url(ALERTS_PATH),
                           heartbeat_url=webhook.url(HEARTBEAT_PATH))
    try:
        manager.wait_ready()
        yield manager
    finally:
        manager.stop()


@pytest.fixture
def worker(pulse_env: PulseEnv) -> Iterator[tuple[WorkerProcess, int]]:
    port = free_port()
    pulse_env.extra["PULSE_METRICS_PORT"] = str(port)
    pulse_env.extra["PULSE_METRICS_HOST"] = "127.0.0.1"
    process = WorkerProcess(pulse_env, log_name="alert-e2e-worker")
    try:
        yield process, port
    finally:
        terminate(process.process, STOP_WAIT_S)
        process.stop()  # already exited: only closes its log


@pytest.fixture
def prometheus(tmp_path: Path, worker: tuple[WorkerProcess, int], alertmanager: Alertmanager) -> Iterator[Prometheus]:
    _, metrics_port = worker
    config = prometheus_config(f"127.0.0.1:{metrics_port}", f"127.0.0.1:{alertmanager.port}")
    server = Prometheus(config, tmp_path / "prometheus")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# --- the fault -----------------------------------------------------------------------------------

class MalformedBurst:
    """Produces truncated JSON to the payments topic at a steady pace (so the 1m rates stay high) until
    stopped or `max_s` is over."""

    def __init__(self, bootstrap: str, topic: str = TOPIC_PAYMENTS, rate: float = BURST_RATE,
                 max_s: float = BURST_MAX_S) -> None:
        self.bootstrap, self.topic, self.rate, self.max_s = bootstrap, topic, rate, max_s
        self.sent = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="malformed-burst", daemon=True)

    def __enter__(self) -> MalformedBurst:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks=1, linger_ms=5)
        except BaseException as error:  # reported by check()
            self.error = error
            return
        try:
            started = time.monotonic()
            while not self._stop.is_set() and time.monotonic() - started < self.max_s:
                # Cut off mid-object: the worker must dead-letter it as malformed_json.
                value = b'{"type": "payment", "event_id": "burst-%08d", "amount_vnd": 5' % self.sent
                producer.send(self.topic, value=value)
                self.sent += 1
                ahead = started + self.sent / self.rate - time.monotonic()
                if ahead > 0:
                    self._stop.wait(ahead)
            producer.flush(timeout=10)
        except BaseException as error:
            self.error = error
        finally:
            producer.close(timeout=10)

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"producing the malformed burst failed: {self.error!r}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=STOP_WAIT_S + 15)


# --- helpers -------------------------------------------------------------------------------------

def scalar(prometheus: Prometheus, expr: str) -> float | None:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else None


def webhook_alerts(webhook: WebhookReceiver, status: str = "firing", name: str = ALERT) -> list[dict]:
    return [a for a in webhook.alerts() if a["labels"].get("alertname") == name and a.get("status") == status]


def diagnostics(prometheus: Prometheus, worker: WorkerProcess, alertmanager: Alertmanager,
                webhook: WebhookReceiver) -> str:
    parts = []
    try:
        parts.append(f"ratio1m: {prometheus.query('stream:pulse_events_deadlettered:ratio1m')}")
        parts.append(f"dead-lettered: {prometheus.query('pulse_events_deadlettered_total')}")
        parts.append(f"consumed: {prometheus.query('pulse_events_consumed_total')}")
        parts.append(f"{ALERT} in Prometheus: {prometheus.alerts(ALERT)}")
        parts.append(f"all alerts in Prometheus: {[a['labels'] for a in prometheus.api('alerts')['alerts']]}")
        parts.append(f"targets: {prometheus.targets(WORKER_JOB)}")
    except Exception as error:  # diagnostics only
        parts.append(f"(Prometheus API failed: {error!r})")
    try:
        parts.append(f"Alertmanager alerts: {alertmanager.alerts()}")
    except Exception as error:
        parts.append(f"(Alertmanager API failed: {error!r})")
    parts.append(f"webhook payloads: {json.dumps(webhook.received())[-3000:]}")
    if webhook.errors:
        parts.append(f"webhook errors: {webhook.errors}")
    parts.append(f"--- worker log ({worker.log_path}) ---\n{worker.log()[-3000:]}")
    parts.append(prometheus.log_tail(1500))
    parts.append(alertmanager.log_tail(1500))
    return "\n".join(parts)


# --- the test ------------------------------------------------------------------------------------

@pytest.mark.timeout(420)
def test_dead_letter_burst_fires_and_reaches_the_webhook(
    pulse_env: PulseEnv, webhook: WebhookReceiver, alertmanager: Alertmanager,
    worker: tuple[WorkerProcess, int], prometheus: Prometheus,
) -> None:
    process, metrics_port = worker

    def describe() -> str:
        return diagnostics(prometheus, process, alertmanager, webhook)

    def healthy() -> None:
        if not process.alive():
            raise AssertionError(f"the worker exited ({process.process.returncode})\n{describe()}")
        prometheus.check_alive()
        alertmanager.check_alive()

    # Prometheus scrapes the worker on the test's port and knows the rule.
    def worker_up() -> bool:
        healthy()
        targets = prometheus.targets(WORKER_JOB)
        return any(t["health"] == "up" and t["scrapeUrl"] == f"http://127.0.0.1:{metrics_port}/metrics"
                   for t in targets)

    wait_until(worker_up, TARGET_UP_TIMEOUT_S, f"Prometheus target {WORKER_JOB} up", describe=describe)
    rules = prometheus.alert_rules(ALERT)
    assert rules, f"Prometheus did not load alert {ALERT} from deploy/prometheus/rules/\n{describe()}"

    # --- no fire: ordinary traffic with a few dead letters --------------------------------------
    # Event time starts in the past: a live simulator holds each event until its time has come, and at night
    # (quiet hours) its clock runs up to 50 times faster than the wall clock, so 400 events starting "now"
    # took minutes to send. Started as far back as the run can cover, every event is already due.
    started = event_time_start(datetime.now(UTC), VALID_EVENTS / VALID_RATE, behind_s=60).isoformat()
    simulated = pulse_env.pulse("simulate", "--events", str(VALID_EVENTS), "--rate", str(VALID_RATE),
                                "--start", started, "--faults", "malformed=0.05", "--metrics-port", "0",
                                timeout=120)
    report = json.loads(simulated.stderr.strip().splitlines()[-1])
    assert report["total"] == VALID_EVENTS, report
    pulse_env.wait_until_stored(timeout_s=90)
    wait_until(lambda: (scalar(prometheus, "sum(pulse_events_consumed_total)") or 0) >= VALID_EVENTS, 30,
               f"Prometheus to scrape all {VALID_EVENTS} consumed events", describe=describe)
    dead = scalar(prometheus, "sum(pulse_events_deadlettered_total)") or 0
    assert dead > 0, f"the 5% malformed events were not dead-lettered\n{describe()}"
    # Watch a few rule evaluations (every 1 s): the alert must not even be pending.
    quiet_until = time.monotonic() + 5
    while time.monotonic() < quiet_until:
        healthy()
        active = prometheus.alerts(ALERT)
        assert not active, f"{ALERT} is {active[0]['state']} under normal traffic\n{describe()}"
        for sample in prometheus.query("stream:pulse_events_deadlettered:ratio1m"):
            ratio = float(sample["value"][1])
            assert math.isnan(ratio) or ratio <= 0.5, f"dead-letter ratio {ratio} without a burst\n{describe()}"
        time.sleep(1)
    assert all(rule["state"] == "inactive" for rule in prometheus.alert_rules(ALERT)), describe()
    assert not webhook_alerts(webhook), f"webhook got {ALERT} before the burst\n{describe()}"

    # --- the burst -------------------------------------------------------------------------------
    with MalformedBurst(pulse_env.bootstrap) as burst:
        def firing() -> list[dict]:
            healthy()
            burst.check()
            return [a for a in prometheus.alerts(ALERT) if a["state"] == "firing"]

        fired = wait_until(firing, FIRING_TIMEOUT_S, f"{ALERT} firing in Prometheus", describe=describe)
        assert {a["labels"].get("stream") for a in fired} == {"payments"}, fired

        def delivered() -> list[dict]:
            healthy()
            return webhook_alerts(webhook)

        notified = wait_until(delivered, WEBHOOK_TIMEOUT_S, f"the webhook to receive {ALERT} (firing)",
                              describe=describe)

    malformed = scalar(prometheus, 'sum(pulse_events_deadlettered_total{stream="payments",reason="malformed_json"})')
    assert malformed and malformed > 0, f"the burst was not dead-lettered as malformed_json\n{describe()}"

    alert = notified[0]
    assert alert["payload_status"] == "firing", alert
    assert alert["receiver"] == "pulse-default", alert
    assert alert["labels"].get("severity") == "warning", alert
    assert alert["labels"].get("stream") == "payments", alert
    runbook = alert["annotations"].get("runbook_url", "")
    assert runbook.endswith(RUNBOOK_ANCHOR), f"runbook_url {runbook!r} should end with {RUNBOOK_ANCHOR}"
    assert alert["annotations"].get("summary"), alert
    assert alert["path"] == ALERTS_PATH, alert

    # --- the alerting path watches itself ---------------------------------------------------------
    def self_scraped() -> bool:
        healthy()
        up = prometheus.query(f'up{{job=~"{PROMETHEUS_JOB}|{ALERTMANAGER_JOB}"}} == 1')
        return {sample["metric"]["job"] for sample in up} == {PROMETHEUS_JOB, ALERTMANAGER_JOB}

    wait_until(self_scraped, TARGET_UP_TIMEOUT_S, "Prometheus scraping itself and Alertmanager", describe=describe)
    wait_until(lambda: (scalar(prometheus, 'sum(alertmanager_notifications_total{integration="webhook"})') or 0) > 0,
               TARGET_UP_TIMEOUT_S, "Alertmanager's notification counters in Prometheus", describe=describe)
    assert scalar(prometheus, "sum(alertmanager_notifications_failed_total)") == 0, describe()
    # Prometheus drops what it sends before it has found Alertmanager and resends firing alerts once a
    # minute (--rules.alert.resend-delay), so the first heartbeat may take that long.
    heartbeats = wait_until(lambda: webhook_alerts(webhook, name=WATCHDOG), HEARTBEAT_TIMEOUT_S,
                            f"{WATCHDOG} at the heartbeat URL", describe=describe)
    assert {(a["path"], a["receiver"]) for a in heartbeats} == {(HEARTBEAT_PATH, "pulse-heartbeat")}, heartbeats
    assert all(a["path"] == ALERTS_PATH for a in webhook.alerts() if a["labels"]["alertname"] != WATCHDOG)
    assert not webhook.errors, webhook.errors


# --- inhibition ----------------------------------------------------------------------------------

INHIBIT_TIMEOUT_S = 30


def lag_alert(topic: str, severity: str) -> dict:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": "PulseConsumerLagHigh", "severity": severity, "topic": topic,
                   "job": "pulse-worker", "instance": "127.0.0.1:6066"},
        "annotations": {"summary": f"lag on {topic}"},
        "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }


@pytest.mark.timeout(120)
def test_critical_alert_on_one_topic_inhibits_the_warning_on_that_topic_only(
    webhook: WebhookReceiver, alertmanager: Alertmanager,
) -> None:
    payments, dossiers = "pulse.payments.vietqr", "pulse.dossiers.events"
    alertmanager.post_alerts([lag_alert(payments, "critical"), lag_alert(payments, "warning"),
                              lag_alert(dossiers, "warning")])

    def states() -> dict[tuple[str, str], str]:
        alertmanager.check_alive()
        return {(a["labels"]["topic"], a["labels"]["severity"]): a["status"]["state"]
                for a in alertmanager.alerts() if a["labels"].get("alertname") == "PulseConsumerLagHigh"}

    expected = {(payments, "critical"): "active", (payments, "warning"): "suppressed",
                (dossiers, "warning"): "active"}
    wait_until(lambda: states() == expected, INHIBIT_TIMEOUT_S,
               f"Alertmanager to inhibit exactly the payments warning (expected {expected})",
               describe=lambda: f"states: {states()}\n{alertmanager.log_tail(1500)}")

    def delivered() -> set[tuple[str, str, str]]:
        return {(a["labels"]["topic"], a["labels"]["severity"], a["receiver"])
                for a in webhook_alerts(webhook, name="PulseConsumerLagHigh")}

    wanted = {(payments, "critical", "pulse-critical"), (dossiers, "warning", "pulse-default")}
    wait_until(lambda: delivered() >= wanted, INHIBIT_TIMEOUT_S, f"the webhook to receive {wanted}",
               describe=lambda: f"delivered: {delivered()}\n{alertmanager.log_tail(1500)}")
    time.sleep(2)  # a group_wait (1s) more: the inhibited warning must still not arrive
    assert delivered() == wanted, delivered()
    assert not webhook.errors, webhook.errors
