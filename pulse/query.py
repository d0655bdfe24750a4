"""`pulse query`: run SQL on the configured ClickHouse and print it as a table, JSON or CSV.

It only ever reads: it runs no migration, creates no embedded store, and sends every statement with
`readonly = 1` (unless the ClickHouse user is read-only already), so DDL and INSERT are refused by
ClickHouse itself. A store, database or table that does not exist is named in the error, since an empty
answer from a mistyped PULSE_CLICKHOUSE_URL would look like "no data".
"""
from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from rich.console import Console
from rich.table import Table

from pulse.errors import PulseError
from pulse.settings import Settings
from schemas.redact import redact_url
from sinks.client import Warehouse

# ClickHouse error codes worth a sentence of their own.
UNKNOWN_TABLE = 60
UNKNOWN_DATABASE = 81
READONLY = 164


class QueryRefused(PulseError, RuntimeError):
    """The query cannot run here: no store, no database or table, or a statement that would write."""


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[tuple]]:
    url, password = settings.query_connection()
    warehouse = Warehouse(url, keep_open=False, lock_timeout_s=settings.chdb_lock_timeout_s, password=password)
    if warehouse.embedded:
        _require_embedded_store(warehouse, url_was_set=bool(settings.clickhouse_query_url or settings.clickhouse_url))
    try:
        with warehouse.lease() as client:
            result = client.query(sql, settings=_read_only(client))
            return list(result.column_names), list(result.result_rows)
    except DatabaseError as error:
        raise _explained(error, warehouse) from None
    finally:
        warehouse.close()


def _require_embedded_store(warehouse: Warehouse, *, url_was_set: bool) -> None:
    # chDB creates an empty store wherever it is opened; a query must not be the thing that creates one.
    if (warehouse.chdb_path / "metadata").is_dir():
        return
    source = (f"PULSE_CLICKHOUSE_URL is {redact_url(warehouse.url)}" if url_was_set
              else "PULSE_CLICKHOUSE_URL is unset, so chdb://<PULSE_STATE_DIR>/clickhouse")
    raise QueryRefused(f"no ClickHouse store at {warehouse.chdb_path} ({source}): check the URL, or create "
                       "the store with `pulse migrate` or a worker")


def _read_only(client: Client) -> dict[str, int]:
    """`readonly = 1` for this query, unless the user is read-only already (it may not change the setting)."""
    current = client.server_settings.get("readonly")
    return {} if current is not None and current.value != "0" else {"readonly": 1}


def _explained(error: DatabaseError, warehouse: Warehouse) -> Exception:
    where = f"the ClickHouse at {redact_url(warehouse.url)}"
    text = str(error)
    if f"Code: {UNKNOWN_DATABASE}." in text:
        name = _quoted(r"Database `?([^`\s]+?)`? does", text)
        return QueryRefused(f"database {name} does not exist in {where} (PULSE_CLICKHOUSE_URL): check the URL, "
                            "or create the schema with `pulse migrate`")
    if f"Code: {UNKNOWN_TABLE}." in text:
        name = _quoted(r"(?:identifier '([^']+)'|Table `?([^`\s]+?)`? does)", text)
        return QueryRefused(f"table {name} does not exist in {where} (PULSE_CLICKHOUSE_URL): check the name, "
                            "or create the schema with `pulse migrate`")
    if f"Code: {READONLY}." in text:
        return QueryRefused("pulse query only reads: ClickHouse refused a statement that writes, changes the "
                            "schema or changes settings (the schema is `pulse migrate`'s job)")
    return QueryRefused(_first_line(text))


def _quoted(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    return next((group for group in found.groups() if group), "?") if found else "?"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "ClickHouse error"


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
