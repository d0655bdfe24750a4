"""`pulse backfill`: recompute window tables from the raw tables inside ClickHouse."""
from __future__ import annotations

import json
import sys
from datetime import datetime

import click

from pulse.cli.base import main, settings_of
from pulse.cli.params import ISO_TIME


@main.command()
@click.option("--table", "tables", multiple=True, required=True,
              type=click.Choice(["payments_1m", "dossiers_1m", "id_activations_1m", "all"]),
              help="Window table to recompute (repeatable), or `all`.")
@click.option("--since", type=ISO_TIME, required=True, help="First window start, ISO 8601 with offset, INCLUDED.")
@click.option("--until", type=ISO_TIME, required=True, help="End, ISO 8601 with offset, EXCLUDED.")
@click.option("--province", "provinces", multiple=True,
              help="Only these provinces (repeatable; legacy codes are mapped to current ones).")
@click.option("--verify", is_flag=True,
              help="Only compare recomputed rows with the stored ones (FINAL); exit 1 on any difference.")
@click.option("--prune", is_flag=True,
              help="Also delete stored windows that have no raw events any more (kept by default).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--cluster", default=None, metavar="NAME",
              help="The configured server is a node of ClickHouse cluster NAME (schema from `pulse migrate "
                   "--cluster NAME`): deletes go to the local tables ON CLUSTER NAME.")
@click.pass_context
def backfill(ctx: click.Context, tables: tuple[str, ...], since: datetime, until: datetime,
             provinces: tuple[str, ...], verify: bool, prune: bool, quiet: bool, cluster: str | None) -> None:
    """Recompute window tables for [--since, --until) from the raw tables inside ClickHouse.

    Uses the same window definitions as the worker; writes only windows that differ from the
    recomputation (so a second run writes nothing). Prints a JSON report.
    """
    from pulse.backfill import BackfillOptions, run_backfill

    options = BackfillOptions(tables=tables, since=since, until=until, provinces=provinces, verify=verify,
                              prune=prune, quiet=quiet, cluster=cluster)
    report = run_backfill(settings_of(ctx), options)
    click.echo(json.dumps(report, default=str))
    if verify and report["differences"]:
        sys.exit(1)
