"""`pulse bench`: the end-to-end benchmark on the real broker and chDB."""
from __future__ import annotations

import json

import click

from pulse import infra
from pulse.cli.base import main, settings_of
from pulse.cli.params import POSITIVE_COUNT, POSITIVE_NUMBER


@main.command()
@click.option("--events", type=POSITIVE_COUNT, default=1_000_000, show_default=True,
              help="Events for the throughput run.")
@click.option("--rate", type=POSITIVE_NUMBER, default=5000.0, show_default=True,
              help="Steady rate for the freshness run.")
@click.option("--freshness-seconds", type=POSITIVE_NUMBER, default=20.0, show_default=True,
              help="Length of the freshness run.")
@click.option("--keep", is_flag=True, help="Keep the bench's ClickHouse store under .pulse/bench/.")
@click.option("--sustained", is_flag=True,
              help="Instead: raise the offered rate in steps until lag stops being bounded; report the highest held.")
@click.option("--step-seconds", type=POSITIVE_NUMBER, default=60.0, show_default=True,
              help="With --sustained: length of each rate step.")
@click.pass_context
def bench(ctx: click.Context, events: int, rate: float, freshness_seconds: float, keep: bool, sustained: bool,
          step_seconds: float) -> None:
    """End-to-end benchmark on the real broker and chDB; prints a table and one JSON object (last line)."""
    from rich.console import Console
    from rich.table import Table

    from pulse.bench import BenchOptions, SustainedOptions, run_sustained
    from pulse.bench import run as run_bench

    console = Console(stderr=True)
    settings = settings_of(ctx)
    if not infra.kafka_reachable(settings):
        infra.up(settings, with_monitoring=False)

    def say(text: str) -> None:
        console.print(f"[dim]{text}[/]")

    if sustained:
        result = run_sustained(settings, SustainedOptions(step_s=step_seconds, keep=keep), say=say)
    else:
        result = run_bench(settings, BenchOptions(events=events, rate=rate, freshness_s=freshness_seconds, keep=keep),
                           say=say)
    table = Table("measure", "value", title="pulse bench")
    for name, value in result.items():
        table.add_row(name, f"{value:,}" if isinstance(value, (int, float)) and not isinstance(value, bool)
                      else str(value))
    console.print(table)
    click.echo(json.dumps(result))
