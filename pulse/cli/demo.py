"""`pulse demo`: infra, worker, simulators and the live view in one command."""
from __future__ import annotations

import click

from pulse.cli.base import main, settings_of
from pulse.cli.params import POSITIVE_NUMBER


@main.command()
@click.option("--duration", "duration_s", type=POSITIVE_NUMBER, default=60.0, show_default=True,
              help="Seconds of simulated load.")
@click.option("--rate", type=POSITIVE_NUMBER, default=400.0, show_default=True, help="Events per second.")
@click.option("--speed", type=POSITIVE_NUMBER, default=60.0, show_default=True, help="Event-time speed-up.")
@click.option("--keep-infra", is_flag=True, help="Leave Kafka running afterwards.")
@click.pass_context
def demo(ctx: click.Context, duration_s: float, rate: float, speed: float, keep_infra: bool) -> None:
    """Everything in one command: infra up, worker, simulators, live view."""
    from pulse.demo import run

    run(settings_of(ctx), duration_s=duration_s, rate=rate, speed=speed, keep_infra=keep_infra)
