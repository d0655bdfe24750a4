"""`pulse replay`: feed recorded events back, from a file or a range of a Kafka topic, into the input
topics (the default) or straight into ClickHouse (`--direct`).

Sources
    a JSONL file (`.gz` too), one message value per line; or Kafka messages whose timestamps fall in
    [since, until) (offsets per partition from the consumer's `offsets_for_times`); or explicit offset
    ranges `topic:partition:start-end` (end exclusive). Topic messages are read merged across partitions
    in timestamp order, so event time moves forward as it did when they were produced.

Targets
    Kafka: each message goes to its stream's input topic with its key (a file line's key comes from its
    content, as the simulators set it; a topic message keeps its own). The worker then applies its usual
    rules, including lateness against the partitions' current watermarks.

    Direct: the same `Pipeline` and `ClickHouseSink` as the worker, without Kafka. Messages carry a
    pseudo-topic `replay:<source>@<digest>/<stream>` (source = the file name or the source topic; digest =
    the first 12 hex digits of the file's SHA-256, or of the topic range), partition = 0 for a file or the
    source partition, offset = the 0-based line number or the source offset. So `stream_offsets` gets one
    row per pseudo-partition (last line/offset stored and its event-time watermark), dead letters say
    which line or offset they came from, the pseudo-partitions have watermarks of their own (old data is
    not `too_late` against today's live partitions) and the worker's progress on the real input
    partitions is never touched. Replaying the same source directly again skips what is already stored.

Checkpoints
    Every run that writes keeps `<state dir>/replay-checkpoints/<hash>.json` (hash of source identity and
    target); `--resume` continues from it. For the Kafka target each chunk is recorded as pending (its
    source range and the target partitions' end offsets before it) before it is sent and as done after
    the broker acknowledged it; resuming after a kill reads the target partitions from those offsets and
    sends only the messages of the pending chunk that are not there, so nothing is sent twice.
"""
from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pulse.errors import PulseUsageError
from pulse.kafka_security import kafka_options
from pulse.kafka_tools import end_offsets, wait_for_group
from pulse.parsing import OffsetRange, parse_offsets, parse_speed, parse_time
from pulse.progress import Tracker, interactive
from pulse.replay.checkpoint import CHECKPOINT_DIR, Checkpoint, redact_url
from pulse.replay.pacer import Chunk, EventTimePacer, chunks
from pulse.replay.records import Record, Source, event_time_of
from pulse.replay.records import route as _route  # noqa: F401 - tests/pulse/test_replay.py reads it here
from pulse.replay.sources import FileSource, TopicSource, read_partitions
from pulse.replay.targets import DirectTarget, DryRun, KafkaTarget, Target
from pulse.settings import Settings

__all__ = ["CHECKPOINT_DIR", "Checkpoint", "Chunk", "DirectTarget", "DryRun", "EventTimePacer", "FileSource",
           "KafkaTarget", "OffsetRange", "Record", "ReplayOptions", "Source", "Target", "TopicSource", "chunks",
           "event_time_of", "make_source", "parse_offsets", "parse_speed", "parse_time", "read_partitions",
           "redact_url", "run_replay"]

KAFKA_CHUNK = 10_000  # messages per acknowledged, checkpointed chunk at --speed max
PACED_CHUNK_S = 0.25  # wall seconds per chunk when paced by event time


@dataclass
class ReplayOptions:
    from_file: Path | None = None
    topics: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    from_offsets: list[OffsetRange] | None = None
    direct: bool = False
    speed: float | None = None  # None = max
    dry_run: bool = False
    wait: bool = False
    timeout_s: float = 600.0
    resume: bool = False
    limit: int | None = None
    quiet: bool = True


def make_source(settings: Settings, options: ReplayOptions) -> Source:
    chosen = sum([options.from_file is not None, bool(options.topics), bool(options.from_offsets)])
    if chosen != 1:
        raise PulseUsageError("give exactly one source: --from-file, --topic (with --since/--until) or --from-offsets")
    if options.from_file is not None:
        if options.since or options.until:
            raise PulseUsageError("--since/--until select Kafka messages; they do not apply to --from-file")
        return FileSource(options.from_file)
    if options.from_offsets and (options.since or options.until):
        raise PulseUsageError("--since/--until do not combine with --from-offsets")
    return TopicSource(settings.kafka_bootstrap, topics=options.topics, since=options.since, until=options.until,
                       offsets=options.from_offsets, security=kafka_options(settings))


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM end the chunk in flight cleanly (it is sent and checkpointed), then the run."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _unfinished(path: Path) -> dict | None:
    """The cursor of an interrupted replay recorded at `path`, if there is one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return None if data.get("complete") else data.get("cursor")


def run_replay(settings: Settings, options: ReplayOptions) -> dict[str, object]:
    """Replay as the options say; returns the report printed by `pulse replay`."""
    started = time.monotonic()
    source = make_source(settings, options)
    pacer = None if options.speed is None or options.dry_run else EventTimePacer(options.speed)
    if options.dry_run:
        target = DryRun(settings, source, direct=options.direct)
        size = settings.batch_max_events
    elif options.direct:
        target = DirectTarget(settings, source)
        size = settings.batch_max_events
    else:
        target = KafkaTarget(settings, source)
        size = KAFKA_CHUNK
    checkpoint: Checkpoint | None = None
    resumed = False
    report: dict[str, object] = {"source": source.description, "target": target.name}
    try:
        if not options.dry_run:
            if not options.resume:
                unfinished = _unfinished(Checkpoint.locate(settings.state_dir, source.identity, target.identity))
                if unfinished:
                    report["restarted"] = unfinished
                    print(f"replay: an earlier replay of {source.description} stopped at {unfinished}; starting "
                          "again from the beginning (pass --resume to continue it instead)", file=sys.stderr)
            checkpoint, resumed = Checkpoint.open(settings.state_dir, source, target.identity, resume=options.resume)
            checkpoint.data["runs"] = checkpoint.data.get("runs", 0) + 1
            checkpoint.save()
            report["checkpoint"] = str(checkpoint.path)
            report["resumed"] = resumed
        target.start(checkpoint)
        if checkpoint is not None and resumed and checkpoint.data.get("complete"):
            report.update(target.report(), complete=True, note="already complete; nothing to do")
            return report
        start = checkpoint.data["cursor"] if checkpoint else source.initial_cursor()
        if resumed:
            report["resumed_from"] = start
        ended = None
        with _stop_on_signals() as stop, Tracker(f"replay {source.description}", source.total_units,
                                                 enabled=interactive(options.quiet),
                                                 unit="msgs") as bar:
            for chunk in chunks(source, start, size=size, max_wall_s=PACED_CHUNK_S if pacer else 5.0,
                                pacer=pacer, limit=options.limit, stop=stop):
                target.deliver(chunk, checkpoint)
                position = event_time_of(chunk.records[-1].value) if chunk.records else None
                bar.update(events=len(chunk.records), completed=source.units_done, position=position)
                ended = chunk.ended
        complete = ended == "done"
        if checkpoint is not None:
            checkpoint.data["complete"] = complete
            checkpoint.save()
            report["total_sent"] = checkpoint.data["sent"]
        report.update(target.report(), complete=complete)
        if ended in ("limit", "stopped"):
            report["stopped"] = ended
    finally:
        target.close()
    if options.wait and not options.dry_run and not options.direct:
        security = kafka_options(settings)
        targets = end_offsets(settings.kafka_bootstrap, settings.topics.inputs, security)
        report["waited_s"] = round(wait_for_group(settings.kafka_bootstrap, settings.consumer_group, targets,
                                                  options.timeout_s, security=security), 2)
    report["seconds"] = round(time.monotonic() - started, 2)
    return report

