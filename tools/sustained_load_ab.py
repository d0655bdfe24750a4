"""CPU per message of the sustained bench's load, alone (no worker): the pooled load or the generator producer.

    PYTHONPATH=. PULSE_KAFKA_BOOTSTRAP=127.0.0.1:PORT python tools/sustained_load_ab.py pool 40000 [RATE ...]
    PYTHONPATH=. PULSE_KAFKA_BOOTSTRAP=127.0.0.1:PORT python tools/sustained_load_ab.py old 40000 [RATE ...]

`pool` is pulse.sustained_load (what `pulse bench --sustained` sends now); `old` is BenchRun.produce (the
simulator live and kafka-python's `send`, the sustained bench's producer until round 3). Each rate is offered
for 10 s on topics of a run of its own (deleted afterwards); one JSON line per rate: the rate offered, CPU
seconds of the producing process per message (time.process_time) and in cores. Run the two alternately.
"""
from __future__ import annotations

import json
import sys
import time

from pulse.bench import BenchOptions, BenchRun
from pulse.settings import Settings
from pulse.sustained_load import DEFAULT_POOL_EVENTS, LoadJob, SustainedLoad

SECONDS = 10.0


def _line(mode: str, rate: float, sent: int, seconds: float, cpu_s: float) -> str:
    return json.dumps({"mode": mode, "rate": rate, "offered": round(sent / seconds),
                       "cpu_us_per_event": round(cpu_s / sent * 1e6, 2), "cores": round(cpu_s / seconds, 3)})


def pooled(bench: BenchRun, rates: list[float]) -> None:
    with SustainedLoad(LoadJob(bench.settings, 4000.0, DEFAULT_POOL_EVENTS)) as load:
        began = time.monotonic()
        load.wait_ready()
        print("ready after", round(time.monotonic() - began, 1), "s")
        for rate in rates:
            report = load.offer(rate, SECONDS, lambda: None)
            print(_line("pool", rate, report["sent"], report["seconds"], report["cpu_s"]))


def generated(bench: BenchRun, rates: list[float]) -> None:
    for rate in rates:
        cpu = time.process_time()
        sent = bench.produce(None, rate=rate, start=None, speed=1.0, duration_s=SECONDS)
        print(_line("old", rate, sent, bench.send_seconds, time.process_time() - cpu))


if __name__ == "__main__":
    mode, rates = sys.argv[1], [float(rate) for rate in sys.argv[2:]]
    run = BenchRun(Settings(), BenchOptions(), print)
    run.create_topics()
    try:
        (pooled if mode == "pool" else generated)(run, rates)
    finally:
        run.delete_topics()
