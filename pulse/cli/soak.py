"""`pulse soak`: steady faulty load with worker kills and sink outages."""
from __future__ import annotations

import json
import sys

import click

from pulse import infra
from pulse.cli.base import main, settings_of
from pulse.cli.params import FAULTS, POSITIVE_NUMBER


@main.command()
@click.option("--minutes", type=POSITIVE_NUMBER, default=10.0, show_default=True,
              help="Length of the load (0.5 = 30 s).")
@click.option("--rate", type=POSITIVE_NUMBER, default=2000.0, show_default=True, help="Events per second, steady.")
@click.option("--seed", type=int, default=None, help="Simulator seed (the events and faults sent).")
@click.option("--sample-s", type=float, default=5.0, show_default=True, help="Seconds between RSS/lag samples.")
@click.option("--faults", type=FAULTS, default=None,
              help="Simulator faults, kinds duplicate, late, out_of_order, too_late, malformed [default: all five].")
@click.option("--kill-every-s", type=float, default=600.0, show_default=True,
              help="SIGKILL the worker's Faust process this often (at least once).")
@click.option("--outage-every-s", type=float, default=600.0, show_default=True,
              help="Take the sink away this often (at least once).")
@click.option("--outage-s", type=float, default=15.0, show_default=True, help="Length of each sink outage.")
@click.option("--warmup-s", type=float, default=None,
              help="Memory samples taken sooner than this after a worker process first stored a batch are "
                   "left out of the trend [default: a sixth of the run, at most 60 s].")
@click.option("--max-rss-growth-pct", type=float, default=10.0, show_default=True,
              help="Largest RSS growth over the run, from the fitted trend, that still passes.")
@click.option("--max-lag", type=int, default=None,
              help="Largest consumer lag that passes [default: two minutes of --rate].")
@click.option("--drain-timeout-s", type=float, default=180.0, show_default=True,
              help="Longest wait for the worker to catch up after the load stops.")
@click.option("--keep", is_flag=True, help="Keep the soak's state (store, worker log) after a pass too.")
@click.pass_context
def soak(ctx: click.Context, keep: bool, faults: str | None, **options: float | int | None) -> None:
    """Steady faulty load with worker kills and sink outages; exit 0 when memory, lag and truth hold."""
    from rich.console import Console

    from pulse.soak import DEFAULT_FAULTS, SoakOptions, summary_table
    from pulse.soak import run as run_soak

    console = Console(stderr=True)
    settings = settings_of(ctx)
    if not infra.kafka_reachable(settings):
        infra.up(settings, with_monitoring=False)
    result = run_soak(settings, SoakOptions(keep=keep, faults=faults or DEFAULT_FAULTS, **options),
                      say=lambda text: console.print(f"[dim]{text}[/]"))
    console.print(summary_table(result))
    click.echo(json.dumps(result))
    sys.exit(0 if result["passed"] else 1)
