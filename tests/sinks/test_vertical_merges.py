"""Migration 0010: the tables that grow by one row per event merge column by column (less memory per merge), and
their merges keep the rows a ReplacingMergeTree keeps."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from sinks.client import Warehouse
from sinks.schema import migrate

PER_EVENT_TABLES = ("payments", "dossier_events", "id_activations", "event_index", "dead_letters")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    warehouse = Warehouse(f"chdb://{tmp_path}/store", keep_open=True)
    with warehouse.lease() as leased:
        migrate(leased, "pulse")
        yield leased
    warehouse.close()


def test_the_per_event_tables_merge_vertically(client: Client) -> None:
    engines = dict(client.query("SELECT name, engine_full FROM system.tables WHERE database = 'pulse'").result_rows)
    for table in PER_EVENT_TABLES:
        assert "vertical_merge_algorithm_min_rows_to_activate = 1" in engines[table], engines[table]
        assert "vertical_merge_algorithm_min_columns_to_activate = 1" in engines[table], engines[table]
    assert "vertical_merge" not in engines["payments_1m"]  # window tables keep the defaults


def test_a_vertical_merge_keeps_the_latest_copy_of_each_row(client: Client) -> None:
    # Three parts with the same keys; the merge keeps one row per key, the last inserted one.
    for copy in range(3):
        client.command(f"INSERT INTO pulse.event_index (stream, event_id, event_time, province_code) SELECT "
                       f"'payments', toUUID(concat('00000000-0000-4000-8000-', leftPad(toString(number), 12, '0'))), "
                       f"toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + number, '{copy + 1}' FROM numbers(3000)")
    client.command("OPTIMIZE TABLE pulse.event_index FINAL")
    assert client.command("SELECT count() FROM system.parts WHERE database = 'pulse' AND table = 'event_index' "
                          "AND active") == 1
    assert client.query("SELECT count(), uniqExact(event_id), min(province_code), max(province_code) "
                        "FROM pulse.event_index").result_rows == [(3000, 3000, '3', '3')]
