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


def migrate(client: Client, database: str) -> list[str]:
    """Create the database and apply pending migrations; returns the names of those applied now."""
    for statement in bootstrap_statements(database):
        client.command(statement)
    applied = {row[0] for row in client.query(f"SELECT version FROM {database}.schema_migrations FINAL").result_rows}
    newly_applied = []
    for number, name, statements in migration_statements(database):
        if number in applied:
            continue
        for statement in statements:
            client.command(statement)
        client.insert(f"{database}.schema_migrations", [[number, name]], column_names=["version", "name"])
        newly_applied.append(name)
    if client.command(f"EXISTS TABLE {database}.reference_versions"):  # created by migration 0007
        load_reference_data(client, database)
    return newly_applied
