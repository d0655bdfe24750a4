"""`pulse demo`: the whole pipeline in one command — Kafka, worker, simulator, live view, summary."""
from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

from rich.console import Console

from pulse import infra
from pulse.kafka_security import kafka_options
from pulse.kafka_tools import end_offsets, wait_for_group
from pulse.query import render, run_query
from pulse.settings import DEMO_PII_KEY, Settings
from pulse.simulate import SimulationOptions
from pulse.simulate import run as simulate
from pulse.supervise import stop_process
from pulse.watch import watch

SUMMARY_SQL = """
SELECT p.province_code AS province, sum(p.tx_count) AS qr_payments,
       round(sum(p.amount_vnd) / 1e6, 1) AS qr_value_m_vnd,
       round(100 * sum(p.success_count) / sum(p.tx_count), 1) AS qr_success_pct
FROM pulse.payments_1m AS p FINAL
GROUP BY province ORDER BY qr_payments DESC LIMIT 10"""


def start_worker(settings: Settings) -> subprocess.Popen:
    env = settings.child_env()
    env.setdefault("PULSE_PII_KEY", DEMO_PII_KEY)
    log = (settings.state_dir / "worker.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "pulse.cli", "worker"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def run(settings: Settings, *, duration_s: float, rate: float, speed: float, keep_infra: bool) -> None:
    console = Console()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    was_up = infra.kafka_service(settings).running()
    console.print("[bold]1/5[/] starting local services (first run fetches the Kafka jars with Maven)…")
    for line in infra.up(settings):
        console.print("    " + line)
    worker = start_worker(settings)
    console.print(f"[bold]2/5[/] worker started (pid {worker.pid}, log {settings.state_dir / 'worker.log'}, "
                  f"metrics http://127.0.0.1:{settings.metrics_port}/metrics)")
    # Event time ends at about now: the simulated hours lead up to the present moment.
    start = datetime.now(timezone.utc) - timedelta(seconds=duration_s * speed)
    options = SimulationOptions(rate=rate, speed=speed, start=start, duration_s=duration_s, demo_key=True,
                                faults="duplicate=0.01,late=0.02,malformed=0.002,bad_qr=0.002")
    report: dict = {}
    producer = threading.Thread(target=lambda: report.update(simulate(options, settings)), daemon=True)
    producer.start()
    console.print(f"[bold]3/5[/] simulating {rate:.0f} events/s for {duration_s:.0f} s "
                  f"({speed:.0f}x event time) — live view:")
    try:
        watch(settings, duration_s=duration_s + 5)
        producer.join(timeout=30)
        console.print(f"[bold]4/5[/] produced {report.get('total', '?')} events; waiting for the worker to store them…")
        security = kafka_options(settings)
        waited = wait_for_group(settings.kafka_bootstrap, settings.consumer_group,
                                end_offsets(settings.kafka_bootstrap, settings.topics.inputs, security),
                                timeout_s=120, security=security)
        console.print(f"    caught up in {waited:.1f} s")
    finally:
        code = stop_process(worker)
        console.print(f"    worker stopped (exit {code})")
        if not was_up and not keep_infra:
            for line in infra.down(settings):
                console.print("    " + line)
    columns, rows = run_query(settings, SUMMARY_SQL)
    console.print("[bold]5/5[/] top provinces by cashless QR payments (from ClickHouse, payments_1m FINAL):")
    console.print(render(columns, rows, "table"))
    console.print('Explore further: pulse query "SELECT count() FROM pulse.payments_1m FINAL"')
