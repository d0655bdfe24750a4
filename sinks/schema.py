"""Versioned schema migrations: numbered SQL files under sinks/migrations/, applied once each, in order."""
from __future__ import annotations

import re
from pathlib import Path

from clickhouse_connect.driver.client import Client

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


def migrate(client: Client, database: str) -> list[str]:
    """Create the database and apply pending migrations; returns the names of those applied now."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(LEDGER_DDL.replace("{db}", database))
    applied = {row[0] for row in client.query(f"SELECT version FROM {database}.schema_migrations FINAL").result_rows}
    newly_applied = []
    for number, path in migration_files():
        if number in applied:
            continue
        for statement in _statements(path.read_text(encoding="utf-8")):
            client.command(statement.replace("{db}", database))
        client.insert(f"{database}.schema_migrations", [[number, path.name]], column_names=["version", "name"])
        newly_applied.append(path.name)
    return newly_applied
