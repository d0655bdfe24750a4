"""`pulse watch`: the live terminal view."""
from __future__ import annotations

import click

from pulse.cli.base import main, settings_of
from pulse.cli.params import POSITIVE_NUMBER


@main.command()
@click.option("--duration", "duration_s", type=POSITIVE_NUMBER, default=None, help="Stop after this many seconds.")
@click.pass_context
def watch(ctx: click.Context, duration_s: float | None) -> None:
    """Live terminal view of current-window adoption per province."""
    from pulse.watch import watch as run_watch

    run_watch(settings_of(ctx), duration_s=duration_s)
