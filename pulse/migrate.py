"""`pulse migrate`: create the database and apply the pending schema migrations, once each.

The worker runs the same step when it starts, and compose runs it as a one-shot service before Grafana and
the worker, so that tables exist before the first event does. Applying is idempotent: a migration
recorded in `schema_migrations` is never run again.
"""
from __future__ import annotations

from pulse.settings import Settings
from pulse.store import open_warehouse
from sinks.client import Warehouse
from sinks.schema import bootstrap_statements, migrate, migration_statements


def apply_migrations(warehouse: Warehouse) -> list[str]:
    """Names of the migrations applied now (empty when the store was up to date)."""
    with warehouse.lease() as client:
        return migrate(client, warehouse.database)


def run_migrate(settings: Settings) -> tuple[list[str], str]:
    """Apply pending migrations to the configured store; (names applied now, the database)."""
    warehouse = open_warehouse(settings, keep_open=False)
    try:
        return apply_migrations(warehouse), warehouse.database
    finally:
        warehouse.close()


def migration_script(settings: Settings) -> str:
    """Every statement `pulse migrate` may run, as one SQL script, without connecting to anything.

    For a DBA who applies DDL by hand: the statements are idempotent only through `schema_migrations`,
    so a migration already applied must not be run again."""
    database = open_warehouse(settings, keep_open=False).database  # parses the URL; opens nothing
    parts = ["-- bootstrap", *(f"{statement};" for statement in bootstrap_statements(database))]
    for number, name, statements in migration_statements(database):
        parts.append(f"\n-- {name}")
        parts.extend(f"{statement};" for statement in statements)
        parts.append(f"INSERT INTO {database}.schema_migrations (version, name) VALUES ({number}, '{name}');")
    return "\n".join(parts)
