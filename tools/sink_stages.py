"""Per-stage cost of the worker's batch path (µs per event), for A/B runs of two checkouts on a shared machine.

`python tools/sink_stages.py CODE_DIR [--stored N] [--events M]` runs CODE_DIR's streams.pipeline and
sinks.sink (no Kafka) on a temporary chDB store: first N synthetic events are put straight into event_index
and the raw tables (another day, so no window of the timed run covers them), as a store that has grown, then
M generated messages go through in batches of 20,000 (the worker's batch size). Each Transaction method is
timed by its wall clock; `decode+route` is the rest of Pipeline.process. Run it for both checkouts in
alternation and compare pairs taken at the same moment: the machine's load moves every figure.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# Transaction method -> stage name, under the names of the code before and after issue 14's sink work.
STAGES = {"counted_copies": "lookup", "write": "write", "_insert_json": "raw", "_insert_raw": "raw",
          "_insert_index": "index", "_recompute": "recompute", "_insert_progress": "progress",
          "_insert_dead_letters": "dead_letters"}
RAW = {"payments": "payments", "dossiers": "dossier_events", "identity": "id_activations"}


def _timed(method, stage: str, totals: dict[str, float]):
    def run(*args, **kwargs):
        began = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            totals[stage] += time.perf_counter() - began
    return run


def _preload(client, stored: int) -> None:
    for stream, table in RAW.items():
        count = stored // len(RAW)
        client.command(
            "INSERT INTO pulse.event_index (stream, event_id, fingerprint, topic, partition, offset, event_time, "
            f"province_code) SELECT '{stream}', generateUUIDv4(), number + 1, 't', 0, number, "
            f"toDateTime64('2025-06-01 00:00:00', 3, 'UTC') + number / 100, '01' FROM numbers({count})")
        client.command(
            f"INSERT INTO pulse.{table} (event_id, event_time, province_code) SELECT toString(generateUUIDv4()), "
            f"toDateTime64('2025-06-01 00:00:00', 3, 'UTC') + number / 100, '01' FROM numbers({count})")
    client.command("OPTIMIZE TABLE pulse.event_index FINAL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("code", type=Path)
    parser.add_argument("--stored", type=int, default=0)
    parser.add_argument("--events", type=int, default=60_000)
    args = parser.parse_args()
    sys.path[:0] = [str(args.code), str(args.code / "tools")]
    from profile_pipeline import messages  # from the checkout under test

    from pulse.settings import Settings
    from sinks import sink
    from sinks.client import Warehouse
    from streams.pipeline import Pipeline

    totals: dict[str, float] = defaultdict(float)
    for name, stage in STAGES.items():
        if hasattr(sink.Transaction, name):
            setattr(sink.Transaction, name, _timed(getattr(sink.Transaction, name), stage, totals))
    settings = Settings()
    batch = messages(args.events + 100)
    with tempfile.TemporaryDirectory() as state:
        store = sink.ClickHouseSink(Warehouse(f"chdb://{state}/ch", keep_open=True))
        pipeline = Pipeline(store, {topic: stream for stream, topic in settings.topics.streams.items()},
                            lateness_s=600.0, max_message_bytes=settings.max_message_bytes, max_future_s=300.0)
        pipeline.process(batch[:100])  # migrations outside the timing
        if args.stored:
            with store.transaction() as tx:
                _preload(tx.client, args.stored)
        totals.clear()
        began = time.perf_counter()
        for start in range(100, len(batch), 20_000):
            pipeline.process(batch[start:start + 20_000])
        elapsed = time.perf_counter() - began
        store.close()
    events = len(batch) - 100
    inner = sum(seconds for stage, seconds in totals.items() if stage not in ("write", "lookup"))
    stages = {"decode+route": elapsed - totals["write"] - totals["lookup"], "lookup": totals["lookup"],
              **{stage: seconds for stage, seconds in totals.items() if stage not in ("write", "lookup")},
              "write (rest)": totals["write"] - inner}
    print(f"{args.code.resolve().name} stored={args.stored:,} {events / elapsed:,.0f} events/s | "
          + " ".join(f"{stage} {seconds * 1e6 / events:.2f}" for stage, seconds in stages.items()) + " µs/event")


if __name__ == "__main__":
    main()
