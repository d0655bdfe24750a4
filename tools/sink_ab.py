"""Paired A/B of the sink's inserts and event_index lookup: a base checkout's sinks/sink.py against this one's.

`python tools/sink_ab.py BASE_DIR [--stored N] [--rounds R]` (from this checkout's root) decodes the messages of
`profile_pipeline.messages(60,000)` once, then times, on one chDB store and alternating which goes first, the
base's Transaction and this checkout's: the raw + event_index inserts of each stream's events, and a lookup of
20,000 ids of which 200 are stored (about the live hit rate). `--stored N` first indexes N more events. On a
shared machine only such pairs mean anything: both sides see the same load at the same moment.
"""
from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from profile_pipeline import messages  # noqa: E402

from pulse.settings import Settings  # noqa: E402
from sinks import sink  # noqa: E402
from sinks.client import Warehouse  # noqa: E402
from streams.pipeline import CountedCopy, Pipeline  # noqa: E402


def _decoded_events(store: sink.ClickHouseSink) -> dict[str, list]:
    """The events the pipeline hands to the sink, caught on their way (and stored once)."""
    caught: dict[str, list] = {}
    write = sink.Transaction.write

    def catch(tx, batch):
        for stream, events in batch.events.items():
            caught.setdefault(stream, []).extend(events)
        return write(tx, batch)

    sink.Transaction.write = catch
    settings = Settings()
    pipeline = Pipeline(store, {topic: stream for stream, topic in settings.topics.streams.items()},
                        lateness_s=600.0, max_message_bytes=settings.max_message_bytes, max_future_s=300.0)
    batch = messages(60_000)
    for start in range(0, len(batch), 20_000):
        pipeline.process(batch[start:start + 20_000])
    sink.Transaction.write = write
    return caught


def _insert(module, tx, stream: str, events: list, copies: list) -> None:
    if hasattr(module, "_EventColumns"):  # this branch's interface: columns read once for both inserts
        events = module._EventColumns(events)
    tx._insert_raw(stream, events)
    tx._insert_index(stream, events, copies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("--stored", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("base_sink", args.base / "sinks" / "sink.py")
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as state:
        store = sink.ClickHouseSink(Warehouse(f"chdb://{state}/ch", keep_open=True))
        events = _decoded_events(store)
        random.seed(3)
        ids = random.sample([event.event_id for event in events["payments"]], 200)
        ids += [uuid.uuid4() for _ in range(19_800)]
        with store.transaction() as tx:
            if args.stored:
                tx.client.command(
                    "INSERT INTO pulse.event_index (stream, event_id, fingerprint, topic, partition, offset, "
                    "event_time, province_code) SELECT 'payments', generateUUIDv4(), number + 1, 't', 0, number, "
                    f"now64(3), '01' FROM numbers({args.stored})")
            sides = [("base", base, base.Transaction(tx.client, tx.db)), ("this", sink, tx)]
            for turn in range(args.rounds):
                for name, module, side in sides[::-1] if turn % 2 else sides:
                    for stream, batch in events.items():
                        copies = [CountedCopy(n + 1, "t", 0, n) for n in range(len(batch))]
                        began = time.perf_counter()
                        _insert(module, side, stream, batch, copies)
                        times.setdefault((stream, name), []).append((time.perf_counter() - began) / len(batch))
                    began = time.perf_counter()
                    assert len(side.counted_copies("payments", ids)) == 200
                    times.setdefault(("lookup", name), []).append((time.perf_counter() - began) / len(ids))
        store.close()
    print(f"stored {args.stored:,}, {args.rounds} rounds; µs/event min / median, base -> this")
    for stage in dict.fromkeys(stage for stage, _ in times):
        cells = [sorted(times[(stage, name)]) for name in ("base", "this")]
        print(f"  {stage:9s} " + " -> ".join(f"{c[0] * 1e6:.2f} / {c[len(c) // 2] * 1e6:.2f}" for c in cells))


if __name__ == "__main__":
    main()
