"""The schema rendered for a ClickHouse cluster (sinks/cluster.py), checked with ClickHouse's own parser
(chDB's `formatQuery`) and against the single-node schema as chDB itself reads it from the migrations."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from sinks.client import Warehouse
from sinks.cluster import (
    LOCAL_SUFFIX,
    PROVINCE_SHARDING_KEY,
    ClusterRenderError,
    cluster_migrations,
    cluster_statements,
    cluster_write_settings,
    render_statements,
)
from sinks.schema import _statements, migrate, migration_files

CLUSTER = "pulse_cluster"


@pytest.fixture(scope="module")
def chdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """An embedded store with the single-node migrations applied: the reference the rendering follows."""
    warehouse = Warehouse(f"chdb://{tmp_path_factory.mktemp('cluster-ddl') / 'clickhouse'}")
    with warehouse.lease() as client:
        migrate(client, "pulse")
        yield client
    warehouse.close()


def formatted(client: Client, statement: str) -> str:
    """ClickHouse's own reading of a statement; a syntax error raises."""
    return client.query("SELECT formatQuery({sql:String})", parameters={"sql": statement}).result_rows[0][0]


def single_node_tables(client: Client) -> dict[str, tuple[str, list[str]]]:
    rows = client.query("SELECT name, engine, sorting_key FROM system.tables "
                        "WHERE database = 'pulse' AND engine LIKE '%MergeTree'").result_rows
    return {name: (engine, [part.strip() for part in key.split(",")]) for name, engine, key in rows}


def test_every_rendered_statement_parses_and_is_cluster_ddl(chdb: Client) -> None:
    statements = cluster_statements(CLUSTER)
    assert len(statements) > 20
    for statement in statements:
        text = formatted(chdb, statement)
        if text.startswith("INSERT INTO"):  # a data migration (0004's backfill) runs through Distributed tables
            assert "_local" not in text, text
            continue
        assert f"ON CLUSTER {CLUSTER}" in text, text


def test_every_migration_file_renders(chdb: Client) -> None:
    rendered = cluster_migrations(CLUSTER)
    assert [m.name for m in rendered] == [path.name for _, path in migration_files()]
    for migration in rendered:
        assert migration.statements, f"{migration.name} rendered to nothing"
        for statement in migration.statements:
            formatted(chdb, statement)


def test_each_table_becomes_a_replicated_local_table_and_a_distributed_one(chdb: Client) -> None:
    statements = [formatted(chdb, s) for s in cluster_statements(CLUSTER)]
    tables = single_node_tables(chdb)
    assert {"payments", "payments_1m", "stream_offsets", "dead_letters", "schema_migrations"} <= set(tables)
    for name, (engine, _) in tables.items():
        local = [s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS pulse.{name}{LOCAL_SUFFIX} ")]
        assert len(local) == 1, name
        assert f"ENGINE = Replicated{engine}('/clickhouse/tables/{{shard}}/pulse/{name}{LOCAL_SUFFIX}', " \
               f"'{{replica}}'" in local[0]
        distributed = [s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS pulse.{name} ")]
        assert len(distributed) == 1, name
        assert f"AS pulse.{name}{LOCAL_SUFFIX}" in distributed[0]
        assert f"ENGINE = Distributed({CLUSTER}, pulse, {name}{LOCAL_SUFFIX}, " in distributed[0]


def test_the_version_column_of_window_tables_is_kept(chdb: Client) -> None:
    statements = cluster_statements(CLUSTER)
    local = next(s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS pulse.payments_1m_local"))
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/pulse/payments_1m_local', '{replica}', version)" \
        in local


def _sharding_key(statement: str) -> str:
    inside = statement[statement.index("Distributed(") + len("Distributed("):statement.rindex(")")]
    return inside.split(", ", 3)[3]


def test_sharding_keys_are_functions_of_the_sorting_key(chdb: Client) -> None:
    """Rows that FINAL collapses have equal sorting keys; a sharding key computed from the sorting key
    alone sends them to the same shard. Province-keyed tables (raw and window) all shard by province, so a
    window row and the raw rows it is recomputed from share a shard too."""
    statements = [formatted(chdb, s) for s in cluster_statements(CLUSTER)]
    for name, (_, sorting_key) in single_node_tables(chdb).items():
        statement = next(s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS pulse.{name} "))
        key = _sharding_key(statement)
        if "province_code" in sorting_key:
            assert key == PROVINCE_SHARDING_KEY, name
        else:
            assert key == f"cityHash64({', '.join(sorting_key)})", name
        # The key is a valid expression over the table's columns (evaluated on the single-node table).
        chdb.query(f"SELECT {key} FROM pulse.{name} LIMIT 1")
    for table in ("payments", "dossier_events", "id_activations", "payments_1m", "dossiers_1m", "id_activations_1m"):
        assert "province_code" in single_node_tables(chdb)[table][1], table


def test_alter_goes_to_local_tables_and_column_changes_also_to_the_distributed_one(chdb: Client) -> None:
    rendered = cluster_migrations(CLUSTER)
    ttl = next(m for m in rendered if m.name == "0002_raw_ttl.sql").statements
    for statement in ttl:
        text = formatted(chdb, statement)
        if "TTL" in text or "MATERIALIZE" in text:
            assert re.match(rf"ALTER TABLE pulse\.\w+{LOCAL_SUFFIX} ON CLUSTER", text), text
    added = [s for s in ttl if "ADD COLUMN" in s]
    assert [s.split()[2] for s in added] == ["pulse.dead_letters_local", "pulse.dead_letters"]


FUTURE_MIGRATION = """
-- Shapes other migrations may take: a summing table keyed by day and province, a view, seed rows.
CREATE TABLE IF NOT EXISTS {db}.kpi_daily_test
(
    day Date,
    province_code LowCardinality(String),
    kpi LowCardinality(String),
    numerator UInt64 /* counted */,
    denominator UInt64
)
ENGINE = SummingMergeTree((numerator, denominator))
ORDER BY (day, province_code, kpi)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS {db}.targets_test (province_code String, kpi String, year UInt16, target Float64)
ENGINE = ReplacingMergeTree ORDER BY (province_code, kpi, year);

INSERT INTO {db}.targets_test (province_code, kpi, year, target) VALUES ('01', 'online_dossier_rate', 2026, 0.8);

CREATE OR REPLACE VIEW {db}.kpi_view_test AS
SELECT day, province_code, kpi, sum(numerator) / nullIf(sum(denominator), 0) AS value
FROM {db}.kpi_daily_test FINAL GROUP BY day, province_code, kpi;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kpi_from_payments_test TO {db}.kpi_daily_test AS
SELECT toDate(event_time, 'Asia/Ho_Chi_Minh') AS day, province_code, 'qr_success_rate' AS kpi,
       countIf(status = 'success') AS numerator, count() AS denominator
FROM {db}.payments GROUP BY day, province_code;

ALTER TABLE {db}.kpi_daily_test ADD COLUMN IF NOT EXISTS note String DEFAULT '',
    MODIFY SETTING merge_with_ttl_timeout = 3600;
ALTER TABLE {db}.targets_test DELETE WHERE year < 2020;
OPTIMIZE TABLE {db}.targets_test FINAL;
DROP VIEW IF EXISTS {db}.kpi_view_test;
"""


def test_other_shapes_of_migrations_render_and_parse(chdb: Client, tmp_path: Path) -> None:
    extra = tmp_path / "0099_future.sql"
    extra.write_text(FUTURE_MIGRATION, encoding="utf-8")
    rendered = cluster_migrations(CLUSTER, files=[*migration_files(), (99, extra)])[-1].statements
    texts = [formatted(chdb, s) for s in rendered]
    by_start = {t.split("\n")[0]: t for t in texts}
    summing = by_start[f"CREATE TABLE IF NOT EXISTS pulse.kpi_daily_test_local ON CLUSTER {CLUSTER}"]
    assert "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/pulse/kpi_daily_test_local', '{replica}', " \
           "(numerator, denominator))" in summing
    assert "SETTINGS index_granularity = 8192" in summing
    assert _sharding_key(by_start[f"CREATE TABLE IF NOT EXISTS pulse.kpi_daily_test ON CLUSTER {CLUSTER} AS "
                                  "pulse.kpi_daily_test_local"]) == PROVINCE_SHARDING_KEY
    insert = next(t for t in texts if t.startswith("INSERT"))
    assert insert.startswith("INSERT INTO pulse.targets_test (province_code, kpi, year, target)\n"
                             "SETTINGS distributed_foreground_insert = 1")
    view = next(t for t in texts if t.startswith("CREATE OR REPLACE VIEW"))
    assert f"pulse.kpi_view_test ON CLUSTER {CLUSTER}" in view and "FROM pulse.kpi_daily_test\nFINAL" in view
    materialized = next(t for t in texts if t.startswith("CREATE MATERIALIZED VIEW"))
    assert f"ON CLUSTER {CLUSTER} TO pulse.kpi_daily_test_local" in materialized
    assert "FROM pulse.payments_local" in materialized
    alters = [t for t in texts if t.startswith("ALTER TABLE pulse.kpi_daily_test")]
    assert "MODIFY SETTING" in alters[0] and "ADD COLUMN" in alters[0] and LOCAL_SUFFIX in alters[0].split()[2]
    assert "ADD COLUMN" in alters[1] and "MODIFY SETTING" not in alters[1]
    assert any(t.startswith(f"ALTER TABLE pulse.targets_test_local ON CLUSTER {CLUSTER}") and "DELETE WHERE" in t
               for t in texts)
    assert f"OPTIMIZE TABLE pulse.targets_test_local ON CLUSTER {CLUSTER} FINAL" in texts
    assert f"DROP VIEW IF EXISTS pulse.kpi_view_test ON CLUSTER {CLUSTER}" in texts


@pytest.mark.parametrize("statement, complaint", [
    ("CREATE TABLE pulse.scratch (a UInt8) ENGINE = Memory", "engine Memory"),
    ("CREATE TABLE pulse.scratch (a UInt8) ENGINE = ReplacingMergeTree ORDER BY tuple()", "without a sorting key"),
    ("CREATE TABLE pulse.scratch AS pulse.payments", "without a column list"),
    ("CREATE DICTIONARY pulse.banks (bin String) PRIMARY KEY bin SOURCE(NULL()) LAYOUT(FLAT()) LIFETIME(0)",
     "no cluster rendering"),
    ("RENAME TABLE pulse.payments TO pulse.payments_old", "no cluster rendering"),
    ("ALTER TABLE pulse.payments FREEZE", "has no cluster rendering"),
    ("ALTER TABLE pulse.nowhere ADD COLUMN x UInt8", "not a table created by an earlier migration"),
    ("CREATE MATERIALIZED VIEW pulse.mv ENGINE = MergeTree ORDER BY a AS SELECT 1 AS a", "needs TO"),
    ("CREATE MATERIALIZED VIEW pulse.mv TO pulse.dead_letters AS SELECT * FROM pulse.payments",
     "sharded by province_code"),
])
def test_statements_without_a_safe_cluster_form_are_refused(statement: str, complaint: str) -> None:
    tables: dict = {}
    for _, path in migration_files():  # the tables of the migrations, for the statements that refer to them
        render_statements([s.replace("{db}", "pulse") for s in _statements(path.read_text())], CLUSTER, tables=tables)
    with pytest.raises(ClusterRenderError, match=complaint):
        render_statements([statement], CLUSTER, tables=tables)


def test_a_refused_statement_names_its_migration_file(tmp_path: Path) -> None:
    bad = tmp_path / "0098_bad.sql"
    bad.write_text("CREATE TABLE {db}.scratch (a UInt8) ENGINE = Log;\n", encoding="utf-8")
    with pytest.raises(ClusterRenderError, match="0098_bad.sql: engine Log"):
        cluster_migrations(CLUSTER, files=[(98, bad)])


@pytest.mark.parametrize("cluster, database", [("pulse cluster", "pulse"), ("c", "pulse; DROP"), ("", "pulse")])
def test_names_are_checked_before_they_go_into_sql(cluster: str, database: str) -> None:
    with pytest.raises(ClusterRenderError, match="letters, digits and underscores"):
        cluster_statements(cluster, database)


def test_another_database_name_is_used_everywhere(chdb: Client) -> None:
    statements = cluster_statements(CLUSTER, "pulse_staging")
    assert all("pulse." not in s for s in statements)
    assert any("/clickhouse/tables/{shard}/pulse_staging/payments_local" in s for s in statements)
    formatted(chdb, statements[-1])


def test_write_settings_are_real_clickhouse_settings(chdb: Client) -> None:
    settings = cluster_write_settings(2)
    assert settings == {"distributed_foreground_insert": 1, "insert_quorum": 2, "insert_quorum_timeout": 60_000}
    known = {row[0] for row in chdb.query("SELECT name FROM system.settings WHERE name IN {names:Array(String)}",
                                          parameters={"names": list(settings)}).result_rows}
    assert known == set(settings)
    # ClickHouse accepts the values too (a wrong type or an unknown name fails the query).
    assert chdb.query("SELECT getSetting('insert_quorum')", settings=settings).result_rows == [(2,)]
    assert cluster_write_settings(1)["insert_quorum"] == 0
    with pytest.raises(ValueError):
        cluster_write_settings(0)


def test_pulse_migrate_cluster_print_is_the_whole_rendered_schema_and_parses(chdb: Client, tmp_path: Path) -> None:
    """`pulse migrate --cluster NAME --print`: the bootstrap, every migration and its ledger row, all parsed."""
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "PULSE_STATE_DIR": str(tmp_path), "PULSE_CLICKHOUSE_URL": f"chdb://{tmp_path / 's'}"}
    done = subprocess.run([sys.executable, "-m", "pulse.cli", "migrate", "--cluster", "pulse_cluster", "--print"],
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    script = done.stdout
    statements = [s.strip() for s in re.split(r";\s*\n", script) if s.strip()]
    statements = ["\n".join(line for line in s.splitlines() if not line.startswith("--")).strip() for s in statements]
    statements = [s.rstrip(";") for s in statements if s]
    assert statements[:2] == cluster_statements("pulse_cluster")[:2]
    ledger = [s for s in statements if s.startswith("INSERT INTO pulse.schema_migrations")]
    assert [s for s in statements if s not in ledger] == cluster_statements("pulse_cluster")
    assert len(ledger) == len(migration_files())
    for statement in statements:
        assert formatted(chdb, statement)
    assert not (tmp_path / "s").exists()  # printing connects to nothing


def test_pulse_migrate_cluster_refuses_the_embedded_store(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "PULSE_STATE_DIR": str(tmp_path), "PULSE_CLICKHOUSE_URL": f"chdb://{tmp_path / 's'}"}
    done = subprocess.run([sys.executable, "-m", "pulse.cli", "migrate", "--cluster", "pulse_cluster"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "--cluster needs a ClickHouse server" in done.stderr
    assert "Traceback" not in done.stderr
