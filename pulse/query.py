"""`pulse query`: run SQL on the configured ClickHouse and print it as a table, JSON or CSV."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime

import orjson
from rich.console import Console
from rich.table import Table

from pulse.settings import Settings
from pulse.store import open_warehouse
from sinks.schema import migrate


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[tuple]]:
    warehouse = open_warehouse(settings, keep_open=False)
    try:
        with warehouse.lease() as client:
            migrate(client, warehouse.database)
            result = client.query(sql)
            return list(result.column_names), list(result.result_rows)
    finally:
        warehouse.close()


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, (datetime, date)) else value


def render(columns: list[str], rows: list[tuple], fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps([dict(zip(columns, map(_plain, row))) for row in rows], default=str,
                            option=orjson.OPT_INDENT_2).decode()
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows([[_plain(v) for v in row] for row in rows])
        return buffer.getvalue().rstrip("\n")
    table = Table(*columns, show_lines=False)
    for row in rows:
        table.add_row(*(str(_plain(v)) for v in row))
    console = Console(record=True, width=200)
    with console.capture() as capture:
        console.print(table)
    return capture.get().rstrip("\n")
