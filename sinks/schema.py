"""Versioned schema migrations: numbered SQL files under sinks/migrations/, applied once each, in order."""
from __future__ import annotations

import re
from pathlib import Path

from clickhouse_connect.driver.client import Client

from sinks.reference import load_reference_data

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_STATEMENT_END = re.compile(r";\s*(?:\n|$)")
# The ledger of applied migrations; `{db}` is the database.
LEDGER_DDL = ("CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
              "(version UInt32, name String, applied_at DateTime DEFAULT now()) "
              "ENGINE = ReplacingMergeTree ORDER BY version")


def migration_files() -> list[tuple[int, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        number = int(path.name.split("_", 1)[0])
        found.append((number, path))
    return found


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in _STATEMENT_END.split("\n".join(lines)) if part.strip()]


def bootstrap_statements(database: str) -> list[str]:
    """The database and the ledger of applied migrations, created before any migration runs."""
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}",
        LEDGER_DDL.replace("{db}", database),
    ]


def migration_statements(database: str) -> list[tuple[int, str, list[str]]]:
    """(number, file name, statements) of every migration, rendered for `database`, in order."""
    return [(number, path.name, [statement.replace("{db}", database)
                                 for statement in _statements(path.read_text(encoding="utf-8"))])
            for number, path in migration_files()]


def ledger_insert(database: str, number: int, name: str) -> str:
    """The ledger row of migration `number` as SQL (for scripts, and for a batch of statements in one call)."""
    quoted = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"INSERT INTO {database}.schema_migrations (version, name) VALUES ({number}, '{quoted}')"


def migrate(client: Client, database: str, *, batched: bool = False) -> list[str]:
    """Create the database and apply pending migrations; returns the names of those applied now.

    `batched` (the embedded store only: chDB runs several `;`-separated statements in one call, a server's
    HTTP interface does not) sends the bootstrap in one call and every pending migration with its ledger
    row in another, instead of a call per statement: ~35 calls fewer on an empty store, each of which a
    worker's other threads could hold up on the way back (the GIL). The statements and their order are the
    same; a failing statement stops the call there, so the ledger holds exactly the migrations that ran
    to their end, as it would one statement at a time."""
    _run(client, bootstrap_statements(database), batched)
    applied = {row[0] for row in client.query(f"SELECT version FROM {database}.schema_migrations FINAL").result_rows}
    pending = [(number, name, statements) for number, name, statements in migration_statements(database)
               if number not in applied]
    if batched and pending:
        _run(client, [statement for number, name, statements in pending
                      for statement in (*statements, ledger_insert(database, number, name))], batched)
    else:
        for number, name, statements in pending:
            _run(client, statements, batched)
            client.insert(f"{database}.schema_migrations", [[number, name]], column_names=["version", "name"])
    if client.command(f"EXISTS TABLE {database}.reference_versions"):  # created by migration 0007
        load_reference_data(client, database)
    return [name for _, name, _ in pending]


def _run(client: Client, statements: list[str], batched: bool) -> None:
    if batched:
        client.command(";\n".join(statements))
        return
    for statement in statements:
        client.command(statement)
