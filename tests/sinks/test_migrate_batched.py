"""Migrations sent in one call (the embedded store, `migrate(..., batched=True)`) leave the same schema and
ledger as one call per statement, also when a statement fails partway; the sink's start-up migration also
loads every table's columns."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks import schema
from sinks import sink as sink_module
from sinks.client import Warehouse
from sinks.schema import migrate
from sinks.sink import ClickHouseSink


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    warehouse = Warehouse(f"chdb://{tmp_path}/store", keep_open=True)
    with warehouse.lease() as leased:
        yield leased
    warehouse.close()


def _schema_of(client: Client, database: str) -> list[tuple[str, str]]:
    rows = client.query("SELECT name, create_table_query FROM system.tables WHERE database = {db:String} "
                        "ORDER BY name", parameters={"db": database}).result_rows
    return [(name, query.replace(f"{database}.", "DB.")) for name, query in rows]


def _ledger_of(client: Client, database: str) -> list[tuple[int, str]]:
    return client.query(f"SELECT version, name FROM {database}.schema_migrations FINAL ORDER BY version").result_rows


def _reference_counts(client: Client, database: str) -> list[int]:
    return [client.command(f"SELECT count() FROM {database}.{table}")
            for table in ("procedure_catalogue", "procedure_offers", "targets")]


def test_one_call_builds_what_one_call_per_statement_builds(client: Client) -> None:
    names = [path.name for _, path in schema.migration_files()]
    assert migrate(client, "one_by_one", batched=False) == names
    assert migrate(client, "batched", batched=True) == names
    assert _schema_of(client, "batched") == _schema_of(client, "one_by_one")
    assert len(_schema_of(client, "batched")) >= 16
    assert _ledger_of(client, "batched") == _ledger_of(client, "one_by_one") == list(enumerate(names, start=1))
    assert _reference_counts(client, "batched") == _reference_counts(client, "one_by_one")
    assert min(_reference_counts(client, "batched")) > 0
    assert migrate(client, "batched", batched=True) == []  # up to date: nothing again


def test_a_failing_statement_stops_both_ways_at_the_same_place(client: Client, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_first.sql").write_text("CREATE TABLE {db}.a (n UInt8) ENGINE = MergeTree ORDER BY n;\n")
    (folder / "0002_breaks.sql").write_text("CREATE TABLE {db}.b (n UInt8) ENGINE = MergeTree ORDER BY n;\n"
                                            "ALTER TABLE {db}.nowhere ADD COLUMN m UInt8;\n"
                                            "CREATE TABLE {db}.c (n UInt8) ENGINE = MergeTree ORDER BY n;\n")
    (folder / "0003_after.sql").write_text("CREATE TABLE {db}.d (n UInt8) ENGINE = MergeTree ORDER BY n;\n")
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", folder)
    for database, batched in (("one_by_one", False), ("batched", True)):
        with pytest.raises(ClickHouseError, match="nowhere"):
            migrate(client, database, batched=batched)
    assert _ledger_of(client, "batched") == _ledger_of(client, "one_by_one") == [(1, "0001_first.sql")]
    tables = [name for name, _ in _schema_of(client, "batched")]
    assert tables == [name for name, _ in _schema_of(client, "one_by_one")] == ["a", "b", "schema_migrations"]


def test_the_sink_knows_every_tables_columns_once_migrated(tmp_path: Path) -> None:
    sink = ClickHouseSink(Warehouse(f"chdb://{tmp_path}/store", keep_open=True))
    try:
        sink_module._COLUMNS_CACHE.clear()
        assert sink.migrate() == [path.name for _, path in schema.migration_files()]
        loaded = {key: dict(columns) for key, columns in sink_module._COLUMNS_CACHE.items()}
        sink_module._COLUMNS_CACHE.clear()
        with sink.warehouse.lease() as client:
            one_by_one = {key: sink_module._column_types(client, *key) for key in loaded}
        assert loaded == one_by_one
        assert {"payments", "event_index", "stream_offsets", "payments_1m"} <= {table for _, table in loaded}
        assert list(loaded[("pulse", "payments")])[:2] == ["event_id", "event_time"]  # table order kept
    finally:
        sink_module._COLUMNS_CACHE.clear()
        sink.close()
