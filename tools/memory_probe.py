"""Where the worker's memory goes: the batch path in process (simulated messages -> streams.pipeline ->
sinks.sink on a fresh chDB store, off the main thread as in the worker; no Kafka), with the resident set
split by kind.

    python tools/memory_probe.py EVENTS [--batch 20000] [--engine '{"key": "value"}'] [--heap] [--trim] [--every]

Prints one JSON line per phase (`python`, `import`, `open`, every 10th batch or `--every` one, `end`) with
this process's RssAnon/RssFile (MB) and their peaks (sampled every 50 ms by a thread), the engine's own view
(`MemoryTracking`, cache bytes, jemalloc's allocated/active/resident/mapped/retained from
system.jemalloc_stats), and at the end the peak RssAnon while generating vs storing a batch and the
pipeline's events/s. The messages are generated into a spool file before the store opens and the
generator's memory is given back, so the figures are the batch path's own. `--engine` replaces
sinks.client.CHDB_ENGINE_OPTIONS (A/B of engine settings; jemalloc's are set with JE_MALLOC_CONF in the
environment), `--heap` traces the Python heap per batch (tracemalloc, slow), `--trim` calls glibc's
malloc_trim(0) after each batch.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulse.allocator import library_resident_mb, page_out_library
from pulse.bench import rss_split


class PeakSampler:
    """Peak RssAnon / RssFile of this process, sampled every 50 ms by a daemon thread."""

    def __init__(self) -> None:
        self.peak = {"anon": 0.0, "file": 0.0}
        self.window = 0.0  # peak RssAnon since the last take()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:

        while not self._stop.is_set():
            split = rss_split(os.getpid())
            for kind in self.peak:
                self.peak[kind] = max(self.peak[kind], split.get(kind, 0.0))
            self.window = max(self.window, split.get("anon", 0.0))
            time.sleep(0.05)

    def take(self) -> float:
        """The peak RssAnon since the last take (MB), then start again from now."""
        taken, self.window = self.window, 0.0
        return taken

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def engine_view(client) -> dict[str, float]:
    """The engine's own accounting (MB): what its memory tracker and caches hold, and jemalloc's totals
    (allocated, active, resident, mapped, retained) from its stats text."""
    rows = client.query("SELECT metric, value FROM system.metrics WHERE metric IN ('MemoryTracking', "
                        "'MarkCacheBytes', 'PrimaryIndexCacheBytes', 'UncompressedCacheBytes', "
                        "'MergesMutationsMemoryTracking')").result_rows
    view = {name: round(value / 2**20, 1) for name, value in rows}
    view["active_parts"] = client.command("SELECT count() FROM system.parts WHERE active")
    stats = client.query("SELECT stats FROM system.jemalloc_stats").result_rows[0][0]
    totals = re.search(r"Allocated: (\d+), active: (\d+), metadata: (\d+).*?resident: (\d+), mapped: (\d+), "
                       r"retained: (\d+)", stats)
    if totals:
        for name, value in zip(("je_allocated", "je_active", "je_metadata", "je_resident", "je_mapped", "je_retained"),
                               totals.groups()):
            view[name] = round(int(value) / 2**20, 1)
    return view


def report(phase: str, sampler: PeakSampler, started: float, **extra: object) -> None:
    now = rss_split(os.getpid())
    usage = resource.getrusage(resource.RUSAGE_SELF)  # the engine's merges included: they run on its threads
    print(json.dumps({"phase": phase, "s": round(time.monotonic() - started, 1),
                      "anon_mb": round(now.get("anon", 0), 1), "file_mb": round(now.get("file", 0), 1),
                      "peak_anon_mb": round(sampler.peak["anon"], 1), "peak_file_mb": round(sampler.peak["file"], 1),
                      "major_faults": usage.ru_majflt, "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), **extra}),
          flush=True)


def _spool(events: int, settings) -> Path:
    """The simulator's events, generated once into a temporary file: the generator's own memory (its state
    and objects) is then freed and trimmed, so that what the probe measures is the batch path's."""
    from pulse.simulate import SimulationOptions, build_generator

    generator = build_generator(SimulationOptions(seed=7, events=events, rate=100_000.0, speed=60.0,
                                                  demo_key=True), settings)
    handle, name = tempfile.mkstemp(suffix=".spool")
    with os.fdopen(handle, "wb") as out:
        for item in generator.events(events):
            out.write(b"%s\t%s\t%s\n" % (item.stream.encode(), (item.key or b"").hex().encode(), item.value))
    del generator
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return Path(name)


def _read_spool(path: Path):
    with path.open("rb") as lines:
        for line in lines:
            stream, key, value = line.rstrip(b"\n").split(b"\t", 2)
            yield stream.decode(), bytes.fromhex(key.decode()) or None, value
    path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("events", type=int)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--engine", help="JSON object replacing CHDB_ENGINE_OPTIONS")
    parser.add_argument("--heap", action="store_true", help="trace the Python heap (tracemalloc; slow)")
    parser.add_argument("--every", action="store_true", help="report after every batch, not every 10th")
    parser.add_argument("--trim", action="store_true", help="glibc malloc_trim(0) after each batch")
    parser.add_argument("--table-settings", help="'name=value,...' set on every MergeTree table once migrated")
    parser.add_argument("--page-out-again", type=int, default=0, metavar="N",
                        help="with --page-out: once more after batch N")
    parser.add_argument("--page-out", action="store_true",
                        help="once the store is migrated, page out chDB's start-up pages (pulse.allocator)")
    args = parser.parse_args()
    started = time.monotonic()
    sampler = PeakSampler()
    report("python", sampler, started)

    from pulse.settings import Settings
    from sinks import client as sink_client
    from sinks.client import Warehouse
    from sinks.sink import ClickHouseSink
    from streams.pipeline import Message, Pipeline

    if args.engine is not None:
        sink_client.CHDB_ENGINE_OPTIONS = json.loads(args.engine)
    report("import", sampler, started, engine=sink_client.CHDB_ENGINE_OPTIONS)
    settings = Settings()
    topics = settings.topics.streams
    spool = _spool(args.events, settings)  # generated before the store opens; its memory given back
    emitted = _read_spool(spool)
    with tempfile.TemporaryDirectory() as state:
        warehouse = Warehouse(f"chdb://{state}/ch", keep_open=True)
        sink = ClickHouseSink(warehouse)
        pipeline = Pipeline(sink, {t: s for s, t in settings.topics.streams.items()}, lateness_s=600.0,
                            max_message_bytes=settings.max_message_bytes, max_future_s=300.0)
        with warehouse.lease() as client:
            report("open", sampler, started, engine_mb=engine_view(client))
        if args.table_settings:
            sink.migrate()
            with warehouse.lease() as client:
                for table in client.query("SELECT name FROM system.tables WHERE database = {db:String} AND engine "
                                          "LIKE '%MergeTree'", parameters={"db": warehouse.database}).result_columns[0]:
                    client.command(f"ALTER TABLE {warehouse.database}.{table} MODIFY SETTING {args.table_settings}")
        if args.page_out:  # as the worker does: after the migrations, before the first batch
            sink.migrate()
            report("migrated", sampler, started, chdb_mb=library_resident_mb("chdb"))
            page_out_library("chdb")
            sampler.peak["file"] = 0.0  # from here on: the file-backed peak the batches bring back
            # The library's pages the batches use from here on are those referenced from now (a measure that
            # holds even when another process on the machine maps chDB too, which keeps the pages resident).
            Path("/proc/self/clear_refs").write_text("1")
            report("paged out", sampler, started, chdb_mb=library_resident_mb("chdb"))
        offset, number = 0, 0
        pool = ThreadPoolExecutor(max_workers=1)
        phase_peaks = {"generate": 0.0, "process": 0.0}  # peak RssAnon while generating / storing a batch
        heap_peaks: list[float] = []  # the Python heap's peak during each batch (with --heap)
        process_s = 0.0  # time spent in the pipeline (not generating, not sampling)
        while offset < args.events:
            messages = []
            for stream, key, value in emitted:
                messages.append(Message(topics[stream], offset % 4, offset, key, value, time.time() * 1000))
                offset += 1
                if len(messages) == args.batch:
                    break
            if not messages:
                break
            generating_peak = sampler.take()
            if args.heap:
                tracemalloc.start()
            message_bytes = sum(len(m.value) for m in messages)
            began = time.perf_counter()
            pool.submit(pipeline.process, messages).result()  # off the main thread, as the worker does
            process_s += time.perf_counter() - began
            time.sleep(0.06)  # one more sample
            phase_peaks["generate"] = max(phase_peaks["generate"], generating_peak)
            phase_peaks["process"] = max(phase_peaks["process"], sampler.take())
            heap = {}
            if args.heap:
                heap = {"heap_peak_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 1)}
                heap_peaks.append(heap["heap_peak_mb"])
                tracemalloc.stop()
            number += 1
            del messages
            if args.page_out and number == args.page_out_again:
                page_out_library("chdb")
                sampler.peak["file"] = 0.0
            if args.trim:
                pool.submit(ctypes.CDLL("libc.so.6").malloc_trim, 0).result()
            if number % 10 == 1 or args.every:
                gc.collect()
                with warehouse.lease() as client:
                    chdb = {"chdb_mb": library_resident_mb("chdb")} if args.page_out else {}
                report(f"batch {number}", sampler, started, events=offset, **chdb,
                           batch_value_mb=round(message_bytes / 2**20, 1), engine_mb=engine_view(client), **heap)
        with warehouse.lease() as client:
            # The first batch also runs the migrations and first imports: the steady figure is the later ones'.
            later = {"heap_peak_later_batches_mb": max(heap_peaks[1:])} if len(heap_peaks) > 1 else {}
            chdb = {"chdb_mb": library_resident_mb("chdb")} if args.page_out else {}
            report("end", sampler, started, events=offset, engine_mb=engine_view(client), **later, **chdb,
                   peak_anon_by_phase_mb={name: round(mb, 1) for name, mb in phase_peaks.items()},
                   events_per_s=round(offset / process_s))
        sink.close()
    sampler.stop()


if __name__ == "__main__":
    main()
