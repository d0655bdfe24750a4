"""`pulse archive`: the raw values of a Kafka range, byte for byte, one per line, for `pulse replay`."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from pulse.cli.base import main, settings_of
from pulse.cli.params import ISO_TIME, OFFSET_RANGES
from pulse.errors import PulseUsageError
from pulse.parsing import OffsetRange


@main.command(expects=(OSError,))  # the output file cannot be written
@click.option("--topic", "topics", multiple=True, help="Kafka topic to export (repeatable), with --since/--until.")
@click.option("--since", type=ISO_TIME, default=None,
              help="Start, ISO 8601 with offset, INCLUDED (message timestamp).")
@click.option("--until", type=ISO_TIME, default=None, help="End, ISO 8601 with offset, EXCLUDED.")
@click.option("--from-offsets", "from_offsets", type=OFFSET_RANGES, default=None,
              help="topic:partition:start-end[,...] instead of a time range (end excluded).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file; gzip-compressed when it ends in .gz.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def archive(ctx: click.Context, topics: tuple[str, ...], since: datetime | None, until: datetime | None,
            from_offsets: list[OffsetRange] | None, out: Path, quiet: bool) -> None:
    """Export raw message values of a Kafka range, byte for byte, one per line, for `pulse replay`.

    The range is [--since, --until) by message timestamp, merged across partitions in timestamp order.
    Values that a line cannot hold (tombstones, empty values, values with a line break) are counted and
    left out. Prints a JSON report.
    """
    from pulse.archive import run_archive
    from pulse.kafka_security import kafka_options
    from pulse.replay.sources import TopicSource

    if bool(topics) == bool(from_offsets):
        raise PulseUsageError("give --topic (with --since/--until) or --from-offsets")
    if from_offsets and (since or until):
        raise PulseUsageError("--since/--until do not combine with --from-offsets")
    settings = settings_of(ctx)
    source = TopicSource(settings.kafka_bootstrap, topics=topics, since=since, until=until, offsets=from_offsets,
                         security=kafka_options(settings))
    click.echo(json.dumps(run_archive(source, out, quiet=quiet)))
