"""`pulse migrate`: create the database and apply the pending schema migrations, once each.

The worker runs the same step when it starts, and compose runs it as a one-shot service before Grafana and
the worker, so that tables exist before the first event does. Applying is idempotent: a migration
recorded in `schema_migrations` is never run again.
"""
from __future__ import annotations

from pulse.errors import PulseError
from pulse.settings import Settings
from pulse.store import open_warehouse
from sinks.client import Warehouse
from sinks.cluster import cluster_bootstrap_statements, cluster_migrations
from sinks.schema import bootstrap_statements, ledger_insert, migrate, migration_statements


class ClusterOnEmbeddedStore(PulseError, ValueError):
    """`--cluster` asked of the embedded chDB store, which is one node and has no cluster."""


def apply_migrations(warehouse: Warehouse) -> list[str]:
    """Names of the migrations applied now (empty when the store was up to date)."""
    with warehouse.lease() as client:
        return migrate(client, warehouse.database, batched=warehouse.embedded)


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
        parts.append(f"{ledger_insert(database, number, name)};")
    return "\n".join(parts)


def cluster_migration_script(settings: Settings, cluster: str) -> str:
    """The schema rendered for ClickHouse cluster `cluster` (ON CLUSTER DDL, Replicated local tables and
    Distributed tables, sinks/cluster.py), as one script; connects to nothing."""
    database = open_warehouse(settings, keep_open=False).database
    parts = ["-- bootstrap", *(f"{statement};" for statement in cluster_bootstrap_statements(cluster, database))]
    for migration in cluster_migrations(cluster, database):
        parts.append(f"\n-- {migration.name}")
        parts.extend(f"{statement};" for statement in migration.statements)
        parts.append(f"{ledger_insert(database, migration.number, migration.name)};")
    return "\n".join(parts)


def run_cluster_migrate(settings: Settings, cluster: str) -> tuple[list[str], str]:
    """Apply the pending migrations, rendered for `cluster`, through the configured server (any node)."""
    warehouse = open_warehouse(settings, keep_open=False)
    if warehouse.embedded:
        raise ClusterOnEmbeddedStore("--cluster needs a ClickHouse server (PULSE_CLICKHOUSE_URL=http[s]://...); "
                                     "the embedded chDB store is a single node")
    database = warehouse.database
    migrations = cluster_migrations(cluster, database)
    try:
        with warehouse.lease() as client:
            for statement in cluster_bootstrap_statements(cluster, database):
                client.command(statement)
            applied = {row[0] for row in
                       client.query(f"SELECT version FROM {database}.schema_migrations FINAL").result_rows}
            newly_applied = []
            for migration in migrations:
                if migration.number in applied:
                    continue
                for statement in migration.statements:
                    client.command(statement)
                client.command(ledger_insert(database, migration.number, migration.name))
                newly_applied.append(migration.name)
            return newly_applied, database
    finally:
        warehouse.close()
