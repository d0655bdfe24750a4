"""`pulse query`: read-only SQL on the configured ClickHouse."""
from __future__ import annotations

import click

from pulse.cli.base import main, settings_of


def _client_errors() -> tuple[type[BaseException], ...]:
    # A refused or unreachable server reaches us as clickhouse-connect's error when it is not a DatabaseError
    # that pulse.query explains.
    from clickhouse_connect.driver.exceptions import Error

    return (Error,)


@main.command(expects=_client_errors())
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="Output format.")
@click.pass_context
def query(ctx: click.Context, sql: str, fmt: str) -> None:
    """Run read-only SQL on the configured ClickHouse (PULSE_CLICKHOUSE_QUERY_URL, else PULSE_CLICKHOUSE_URL).

    Never creates a store or tables: a missing store, database or table is an error that says so.
    """
    from pulse.query import render, run_query

    columns, rows = run_query(settings_of(ctx), sql)
    click.echo(render(columns, rows, fmt))
