"""`pulse replay`: re-feed events from a file or a Kafka range, into the input topics or --direct."""
from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from pulse.cli.base import main, settings_of
from pulse.cli.params import ISO_TIME, OFFSET_RANGES, SPEED
from pulse.parsing import OffsetRange


@main.command()
@click.option("--from-file", "from_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSONL file, one message value per line (gzip-compressed `.gz` too).")
@click.option("--topic", "topics", multiple=True,
              help="Kafka topic to replay (repeatable), with --since/--until.")
@click.option("--since", type=ISO_TIME, default=None,
              help="Start of the range, ISO 8601 with offset (e.g. 2026-01-05T00:00:00+07:00), INCLUDED.")
@click.option("--until", type=ISO_TIME, default=None, help="End of the range, ISO 8601 with offset, EXCLUDED.")
@click.option("--from-offsets", "from_offsets", type=OFFSET_RANGES, default=None,
              help="topic:partition:start-end[,...]: offsets start <= o < end (end excluded; `start-` = to "
                   "the current end).")
@click.option("--direct", is_flag=True,
              help="Write straight into ClickHouse through the worker's pipeline and sink, without Kafka; "
                   "progress is kept under pseudo-topics `replay:<source>@<digest>/<stream>`.")
@click.option("--speed", type=SPEED, default="max", show_default=True,
              help="`max`, or an event-time factor: 1440 replays a day in a minute.")
@click.option("--dry-run", "dry_run", is_flag=True,
              help="Count per stream, day (UTC) and province what would be sent (or, with --direct, written "
                   "and dead-lettered); writes nothing.")
@click.option("--wait", is_flag=True, help="Return only when the worker's group has committed everything sent.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Limit for --wait, seconds.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted replay of the same source and target from its checkpoint "
                   "(<state dir>/replay-checkpoints/); without it a replay starts from the beginning.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Stop after this many messages (resume later with --resume).")
@click.option("--quiet", is_flag=True, help="No progress bar (there is none when stdout is not a terminal).")
@click.pass_context
def replay(ctx: click.Context, from_file: Path | None, topics: tuple[str, ...], since: datetime | None,
           until: datetime | None, from_offsets: list[OffsetRange] | None, direct: bool, speed: float | None,
           dry_run: bool, wait: bool, timeout: float, resume: bool, limit: int | None, quiet: bool) -> None:
    """Re-feed events from a file or a Kafka range into the input topics, or --direct into ClickHouse.

    Kafka ranges are by message timestamp and half-open, [--since, --until): per partition from the
    consumer's offsets_for_times(since) up to offsets_for_times(until), keeping only messages with
    since <= timestamp < until. Replaying the same events twice changes no window. Prints a JSON report.
    """
    from pulse.replay import ReplayOptions, run_replay

    options = ReplayOptions(from_file=from_file, topics=topics, since=since, until=until, from_offsets=from_offsets,
                            direct=direct, speed=speed, dry_run=dry_run, wait=wait, timeout_s=timeout,
                            resume=resume, limit=limit, quiet=quiet)
    report = run_replay(settings_of(ctx), options)
    click.echo(json.dumps(report))
    if report.get("stopped") == "stopped":
        sys.exit(130)
