"""`pulse migrate [--print] [--cluster NAME]`: the ClickHouse database and its schema migrations."""
from __future__ import annotations

import click

from pulse.cli.base import main, settings_of
from pulse.errors import PulseError, short_reason
from schemas.redact import redact_url


@main.command()
@click.option("--print", "print_only", is_flag=True,
              help="Print every migration's SQL (for the configured database) instead of applying it; "
                   "connects to nothing.")
@click.option("--cluster", default=None, metavar="NAME",
              help="Render the schema for ClickHouse cluster NAME (ON CLUSTER DDL, Replicated local tables, "
                   "Distributed tables; docs/scaling.md) and apply it through the configured server, or print it "
                   "with --print.")
@click.pass_context
def migrate(ctx: click.Context, print_only: bool, cluster: str | None) -> None:
    """Create the ClickHouse database and apply pending schema migrations (idempotent; the worker does it at start)."""
    from clickhouse_connect.driver.exceptions import Error as ClickHouseError

    from pulse.migrate import cluster_migration_script, migration_script, run_cluster_migrate, run_migrate

    settings = settings_of(ctx)
    if print_only:
        click.echo(cluster_migration_script(settings, cluster) if cluster else migration_script(settings))
        return
    try:
        applied, database = run_cluster_migrate(settings, cluster) if cluster else run_migrate(settings)
    except (ClickHouseError, OSError) as error:  # a refused or unreachable server, told with its address
        where = redact_url(settings.clickhouse_connection()[0])
        raise PulseError(f"migrating the ClickHouse at {where} failed: {short_reason(error)}") from None
    where = f"database {database} at {redact_url(settings.clickhouse_connection()[0])}"
    click.echo(f"applied {', '.join(applied)} to {where}" if applied else f"{where} is up to date")
