"""`pulse backfill`: recompute window tables from the raw tables; `--verify` finds tampered rows, a
backfill repairs them, and a second backfill writes nothing."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pulse.backfill import SPECS_BY_TABLE, delete_windows_sql
from sinks.client import Warehouse
from sinks.cluster import cluster_statements
from tests.pulse.test_replay import check_truth, direct_env, make_events, run_json, window_rows
from tests.support.services import PulseEnv


@pytest.fixture
def stored(pulse_env: PulseEnv, tmp_path: Path) -> tuple[PulseEnv, Path]:
    """A store filled by a direct replay of a simulated file (no worker needed)."""
    events = make_events(pulse_env, tmp_path / "events.jsonl", seed=71)
    env = direct_env(pulse_env, tmp_path, "store")
    run_json(env, "replay", "--from-file", str(events), "--direct")
    return env, events


def execute(env: PulseEnv, *statements: str) -> None:
    warehouse = Warehouse(env.chdb_url, keep_open=False)
    try:
        with warehouse.lease() as client:
            for statement in statements:
                client.command(statement)
    finally:
        warehouse.close()


def span(env: PulseEnv) -> tuple[str, str]:
    """--since/--until around every stored window, with ten minutes to spare on each side."""
    starts = [row[0].replace(tzinfo=timezone.utc) for rows in window_rows(env.chdb_url).values() for row in rows]
    return ((min(starts) - timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
            (max(starts) + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"))


def backfill(env: PulseEnv, *args: str) -> tuple[int, dict]:
    result = env.pulse("backfill", *args, check=False)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


def _at(row_start: datetime) -> str:
    return row_start.strftime("%Y-%m-%d %H:%M:%S")


def test_verify_detects_tampered_windows_and_backfill_repairs_them(stored: tuple[PulseEnv, Path]) -> None:
    env, events = stored
    since, until = span(env)
    rows = window_rows(env.chdb_url)
    pay, dossier, activation = rows["payments_1m"][0], rows["dossiers_1m"][0], rows["id_activations_1m"][-1]
    taken = {(row[0], row[1]) for row in rows["payments_1m"]}
    extra_start = rows["payments_1m"][0][0]
    extra_code = next(code for code in ("01", "04", "08", "11", "12", "14", "15", "19", "20", "22")
                      if (extra_start, code) not in taken)
    execute(
        env,
        # A bad row with a higher version than any recomputation would give: FINAL prefers it.
        f"INSERT INTO pulse.payments_1m (window_start, province_code, tx_count, success_count, amount_vnd, version)"
        f" VALUES ('{_at(pay[0])}', '{pay[1]}', {pay[2] + 5}, {pay[3]}, {pay[4]}, {pay[5] + 1000})",
        # Same version, other measures: the later insert wins under FINAL.
        f"INSERT INTO pulse.dossiers_1m (window_start, province_code, submitted_online, submitted_offline,"
        f" submitted_full_process_online, completed, completed_on_time, paid_online, vneid_authenticated, version)"
        f" VALUES ('{_at(dossier[0])}', '{dossier[1]}', {dossier[2] + 1}, {dossier[3]}, {dossier[4]}, {dossier[5]},"
        f" {dossier[6]}, {dossier[7]}, {dossier[8]}, {dossier[9]})",
        # A window lost, and a window without any raw event.
        f"DELETE FROM pulse.id_activations_1m WHERE window_start = '{_at(activation[0])}'"
        f" AND province_code = '{activation[1]}'",
        f"INSERT INTO pulse.payments_1m (window_start, province_code, tx_count, success_count, amount_vnd, version)"
        f" VALUES ('{_at(extra_start)}', '{extra_code}', 3, 3, 300000, 3)",
    )
    tampered = window_rows(env.chdb_url)
    assert tampered != rows

    code, report = backfill(env, "--table", "all", "--since", since, "--until", until, "--verify")
    assert code == 1 and report["differences"] == 4
    counts = {table: {kind: report["tables"][table][kind] for kind in ("missing", "extra", "different")}
              for table in report["tables"]}
    assert counts == {"payments_1m": {"missing": 0, "extra": 1, "different": 1},
                      "dossiers_1m": {"missing": 0, "extra": 0, "different": 1},
                      "id_activations_1m": {"missing": 1, "extra": 0, "different": 0}}
    bad = next(e for e in report["examples"] if e["table"] == "payments_1m" and e["kind"] == "different")
    assert bad["stored"]["tx_count"] == pay[2] + 5 and bad["recomputed"]["tx_count"] == pay[2]
    assert window_rows(env.chdb_url) == tampered, "--verify must not write"

    code, report = backfill(env, "--table", "all", "--since", since, "--until", until)
    assert code == 0 and report["extra_kept"] == 1
    assert sum(t["inserted"] for t in report["tables"].values()) == 3
    assert sum(t["deleted"] for t in report["tables"].values()) == 2
    code, report = backfill(env, "--table", "all", "--since", since, "--until", until, "--verify")
    assert code == 1 and report["differences"] == 1 and report["examples"][0]["kind"] == "extra"

    code, report = backfill(env, "--table", "payments_1m", "--since", since, "--until", until, "--prune")
    assert code == 0 and report["tables"]["payments_1m"]["deleted"] == 1
    code, report = backfill(env, "--table", "all", "--since", since, "--until", until, "--verify")
    assert code == 0 and report["differences"] == 0
    assert window_rows(env.chdb_url) == rows
    check_truth(env.chdb_url, events)

    code, report = backfill(env, "--table", "all", "--since", since, "--until", until)
    assert code == 0 and all(t["inserted"] == t["deleted"] == 0 for t in report["tables"].values())
    assert window_rows(env.chdb_url) == rows, "a second backfill must change nothing"


def test_backfill_of_one_province_repairs_only_that_province(stored: tuple[PulseEnv, Path]) -> None:
    env, _ = stored
    since, until = span(env)
    rows = window_rows(env.chdb_url)["payments_1m"]
    first = rows[0]
    second = next(row for row in rows if row[1] != first[1])
    execute(env, *[
        f"INSERT INTO pulse.payments_1m (window_start, province_code, tx_count, success_count, amount_vnd, version)"
        f" VALUES ('{_at(row[0])}', '{row[1]}', 0, 0, 0, {row[5] + 1})" for row in (first, second)])

    code, report = backfill(env, "--table", "payments_1m", "--since", since, "--until", until,
                            "--province", first[1])
    assert code == 0 and report["tables"]["payments_1m"]["inserted"] == 1
    assert report["provinces"] == [first[1]]
    code, _ = backfill(env, "--table", "payments_1m", "--since", since, "--until", until, "--province", first[1],
                       "--verify")
    assert code == 0
    code, report = backfill(env, "--table", "payments_1m", "--since", since, "--until", until, "--verify")
    assert code == 1 and [(e["province_code"], e["kind"]) for e in report["examples"]] == [(second[1], "different")]
    # The window range is [since, until): a backfill that ends at the tampered window's start leaves it alone.
    start = second[0].replace(tzinfo=timezone.utc)
    before = (start - timedelta(hours=1)).isoformat()
    code, report = backfill(env, "--table", "payments_1m", "--since", before, "--until", start.isoformat(), "--verify")
    assert code == 0
    code, report = backfill(env, "--table", "payments_1m", "--since", start.isoformat(),
                            "--until", (start + timedelta(minutes=1)).isoformat(), "--verify")
    assert code == 1 and report["differences"] == 1


def test_backfill_refuses_bad_arguments(pulse_env: PulseEnv) -> None:
    result = pulse_env.pulse("backfill", "--table", "payments_1m", "--since", "2026-01-05T00:00:00Z",
                             "--until", "2026-01-04T00:00:00Z", check=False)
    assert result.returncode != 0 and "later than --since" in result.stderr
    result = pulse_env.pulse("backfill", "--table", "payments_1m", "--since", "2026-01-04T00:00:00Z",
                             "--until", "2026-01-05T00:00:00Z", "--province", "99", check=False)
    assert result.returncode != 0 and "unknown province" in result.stderr


def test_backfill_cluster_refuses_the_embedded_store(pulse_env: PulseEnv) -> None:
    result = pulse_env.pulse("backfill", "--table", "payments_1m", "--since", "2026-01-04T00:00:00Z",
                             "--until", "2026-01-05T00:00:00Z", "--cluster", "pulse_cluster", check=False)
    assert result.returncode != 0 and "--cluster needs a ClickHouse server" in result.stderr


def test_cluster_deletes_target_the_local_tables_on_the_cluster_and_parse(tmp_path: Path) -> None:
    """No ClickHouse cluster runs here: ClickHouse's own parser (chDB formatQuery) reads each rendered DELETE, and
    the table it names is one that `pulse migrate --cluster` creates on every node."""
    cluster, start = "pulse_cluster", datetime(2026, 1, 4, 10, 7, tzinfo=timezone.utc)
    doomed = [(start, "01"), (start, "79"), (start + timedelta(minutes=1), "01")]
    schema = " ".join(cluster_statements(cluster))
    warehouse = Warehouse(f"chdb://{tmp_path / 'parser'}", keep_open=False)
    try:
        with warehouse.lease() as client:
            for table in SPECS_BY_TABLE:
                sql = delete_windows_sql("pulse", table, doomed, cluster)
                text = client.query("SELECT formatQuery({sql:String})", parameters={"sql": sql}).result_rows[0][0]
                assert text.startswith(f"DELETE FROM pulse.{table}_local ON CLUSTER {cluster} WHERE"), text
                assert f"CREATE TABLE IF NOT EXISTS pulse.{table}_local ON CLUSTER {cluster}" in schema
                assert all(key in text for key in ("'1767521220/01'", "'1767521220/79'", "'1767521280/01'")), text
                single = delete_windows_sql("pulse", table, doomed)
                assert "ON CLUSTER" not in single and f"DELETE FROM pulse.{table} WHERE" in single
    finally:
        warehouse.close()


def test_the_rendered_delete_removes_exactly_the_doomed_windows(tmp_path: Path) -> None:
    """The literal DELETE that single-node and cluster backfills share, run on chDB: only the named windows go."""
    start = datetime(2026, 1, 4, 10, 7, tzinfo=timezone.utc)
    execute_env = Warehouse(f"chdb://{tmp_path / 'store'}", keep_open=False)
    try:
        with execute_env.lease() as client:
            client.command("CREATE DATABASE IF NOT EXISTS pulse")
            client.command("CREATE TABLE pulse.w (window_start DateTime('UTC'), province_code String) "
                           "ENGINE = MergeTree ORDER BY (window_start, province_code)")
            rows = [[start + timedelta(minutes=m), code] for m in range(3) for code in ("01", "79", "it's")]
            client.insert("pulse.w", rows, column_names=["window_start", "province_code"])
            client.command(delete_windows_sql("pulse", "w", [(start, "79"), (start + timedelta(minutes=1), "it's"),
                                                             (start + timedelta(minutes=2), "01")]))
            left = client.query("SELECT toUnixTimestamp(window_start), province_code FROM pulse.w "
                                "ORDER BY 1, 2").result_rows
    finally:
        execute_env.close()
    base = int(start.timestamp())
    assert left == [(base, "01"), (base, "it's"), (base + 60, "01"), (base + 60, "79"),
                    (base + 120, "79"), (base + 120, "it's")]
