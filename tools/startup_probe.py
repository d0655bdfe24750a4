"""Where a worker's start-up and memory go: spawn -> first batch stored, line by line of its info log,
and its peak resident memory by kind.

    PULSE_KAFKA_BOOTSTRAP=127.0.0.1:PORT python tools/startup_probe.py [--events 40000] [--runs 3]
        [--variant 'LABEL|CODE_DIR|KEY=VALUE;KEY=VALUE' ...]

Produces the bench's calibrated events (with its faults) once into topics of its own, then starts `pulse
worker --no-restart` (info log) for each run: a fresh consumer group from the start offsets and a fresh
embedded store each time, so every run consumes the same messages. Stamps every line the worker writes with
the seconds since the spawn and prints per run the time to "applied migrations", to Faust's "Worker ready",
to the first "stored N messages" line and to the group having committed every offset, the messages/s
that makes (start-up included, as `pulse bench` counts it), and the worker's peak RssAnon / RssFile
(sampled every 0.1 s). Variants (a checkout and environment each: main's code against a branch's, or one
setting changed) alternate run by run, an A/B taken at the same moment. Deletes its topics, groups and
stores when done.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from pulse.bench import BENCH_FAULTS, BenchOptions, BenchRun, rss_split
from pulse.kafka_tools import end_offsets, wait_for_group
from pulse.settings import DEMO_PII_KEY, get_settings

MARKS = {"migrations": "applied migrations", "ready": "Worker ready", "first_stored": "stored "}


def _stamp_lines(worker: subprocess.Popen, began: float, lines: list[tuple[float, str]]) -> None:
    for raw in worker.stdout:
        lines.append((time.monotonic() - began, raw.decode(errors="replace").rstrip()))


def _sample_rss(pid: int, peak: dict[str, float], done: threading.Event) -> None:
    while not done.is_set():
        for kind, mb in rss_split(pid).items():
            peak[kind] = max(peak.get(kind, 0.0), mb)
        time.sleep(0.1)


def one_run(bench: BenchRun, start: dict, messages: int, variant: tuple[str, str, dict[str, str]], run: int) -> dict:
    label, code, extra_env = variant
    group = f"{bench.group}-{run}"
    store = bench.state / f"store-{run}"
    admin = KafkaAdminClient(bootstrap_servers=bench.settings.kafka_bootstrap)
    try:
        admin.alter_group_offsets(group, {tp: OffsetAndMetadata(o, "", -1) for tp, o in start.items()})
    finally:
        admin.close()
    env = {**bench.settings.child_env(), "PULSE_CONSUMER_GROUP": group, "PULSE_CLICKHOUSE_URL": f"chdb://{store}",
           "PULSE_TOPIC_PREFIX": bench.prefix, "PULSE_PII_KEY": os.environ.get("PULSE_PII_KEY", DEMO_PII_KEY),
           "PULSE_METRICS_PORT": "0", "PULSE_CHDB_KEEP_OPEN": "true", "PYTHONPATH": code, **extra_env}
    targets = end_offsets(bench.settings.kafka_bootstrap, bench.topics.inputs, {})
    lines: list[tuple[float, str]] = []
    began = time.monotonic()
    worker = subprocess.Popen([sys.executable, "-m", "pulse.cli", "-v", "worker", "--no-restart", "--loglevel", "info"],
                              cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    reader = threading.Thread(target=_stamp_lines, args=(worker, began, lines), daemon=True)
    reader.start()
    peak: dict[str, float] = {}
    sampled = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(worker.pid, peak, sampled), daemon=True)
    sampler.start()
    try:
        wait_for_group(bench.settings.kafka_bootstrap, group, targets, timeout_s=600, poll_s=0.05, security={})
        committed = time.monotonic() - began
    finally:
        sampled.set()
        worker.terminate()
        worker.wait(timeout=60)
        reader.join(timeout=5)
        admin = KafkaAdminClient(bootstrap_servers=bench.settings.kafka_bootstrap)
        try:
            admin.delete_consumer_groups([group])
        except Exception:  # best effort clean-up
            pass
        finally:
            admin.close()
        shutil.rmtree(store, ignore_errors=True)
    result = {"variant": label, "run": run, "all_committed_s": round(committed, 3),
              "messages_per_s": round(messages / committed), "peak_anon_mb": round(peak.get("anon", 0.0), 1),
              "peak_file_mb": round(peak.get("file", 0.0), 1)}
    for mark, text in MARKS.items():
        result[mark + "_s"] = next((round(at, 3) for at, line in lines if text in line), None)
    result["stored"] = [line.split("stored ", 1)[1] for _, line in lines if "stored " in line][:3]
    if os.environ.get("PROBE_LINES"):
        result["lines"] = [f"{at:7.3f} {line[:160]}" for at, line in lines]
    return result


def _variant(text: str) -> tuple[str, str, dict[str, str]]:
    label, code, settings = (text.split("|") + ["", ""])[:3]
    return label, code or str(Path(__file__).resolve().parents[1]), dict(
        item.split("=", 1) for item in settings.split(";") if item)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[],
                        help="LABEL|CODE_DIR|KEY=VALUE;KEY=VALUE (default: this checkout as it is)")
    args = parser.parse_args()
    variants = [_variant(text) for text in args.variant] or [("this", str(Path(__file__).resolve().parents[1]), {})]
    bench = BenchRun(get_settings(), BenchOptions(events=args.events), print)
    bench.create_topics()
    try:
        start = bench.start_offsets()
        messages = bench.produce(args.events, rate=None, start=None, speed=60.0, faults=BENCH_FAULTS)
        for run in range(args.runs):
            for index, variant in enumerate(variants):
                print(json.dumps(one_run(bench, start, messages, variant, run * len(variants) + index)), flush=True)
    finally:
        bench.delete_topics()
        shutil.rmtree(bench.state, ignore_errors=True)


if __name__ == "__main__":
    main()
