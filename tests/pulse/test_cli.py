"""The command line's edges: bad input, help, --version, `pulse migrate`, and `pulse query` that only reads."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
import pytest

from pulse.cli import main
from sinks.schema import migration_files

COMMAND_TIMEOUT_S = 180


def pulse(*args: str, state: Path, **env: str) -> subprocess.CompletedProcess:
    """`python -m pulse.cli ...` in its own process, with its own state directory."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PULSE_")}
    environment.update({"PULSE_STATE_DIR": str(state), "PULSE_PII_KEY": "cli-test", **env})
    return subprocess.run([sys.executable, "-m", "pulse.cli", *args], env=environment, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error")]


@pytest.mark.parametrize(("args", "says"), [
    (["simulate", "--faults", "duplicate", "--events", "10"], "'duplicate': write KIND=FRACTION, e.g. duplicate=0.01"),
    (["simulate", "--faults", "duplicate=", "--events", "10"], "write KIND=FRACTION"),
    (["simulate", "--faults", "dupes=0.1", "--events", "10"], "unknown fault kind 'dupes'"),
    (["simulate", "--faults", "late=0.9", "--events", "10"], "must be within 0..0.5"),
    (["simulate", "--events", "-5"], "Invalid value for '--events': -5 is not in the range x>=1"),
    (["simulate", "--events", "0"], "Invalid value for '--events'"),
    (["simulate", "--rate", "0", "--events", "5"], "Invalid value for '--rate'"),
    (["simulate", "--start", "garbage", "--events", "5"], "'garbage' is not an ISO 8601 time"),
    (["simulate", "--start", "2026-01-05T07:00:00", "--events", "5"], "needs a UTC offset"),
    (["bench", "--events", "-1"], "Invalid value for '--events'"),
    (["soak", "--faults", "late"], "write KIND=FRACTION"),
    (["worker", "--loglevel", "loud"], "Invalid value for '--loglevel'"),
])
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    result = pulse(*args, "--out", str(tmp_path / "x.jsonl"), state=tmp_path) if args[0] == "simulate" \
        else pulse(*args, state=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result)
    assert says in line
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "x.jsonl").exists()


def test_good_input_still_runs(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    result = pulse("simulate", "--events", "300", "--seed", "1", "--faults", "duplicate=0.01",
                   "--start", "2026-01-05T07:00:00+07:00", "--out", str(out), state=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(out.read_bytes().splitlines()) == 300 + 1  # one duplicate of the 100 events after the warm-up


def _commands(command: click.Command, path: tuple[str, ...] = ("pulse",)):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def test_every_command_and_option_has_help() -> None:
    seen = set()
    for path, command in _commands(main):
        seen.add(" ".join(path))
        assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
        for param in command.params:
            if isinstance(param, click.Option):
                assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]} has no help text"
    assert {"pulse infra up", "pulse infra down", "pulse infra status", "pulse infra fetch",
            "pulse migrate"} <= seen


def test_infra_commands_explain_themselves(tmp_path: Path) -> None:
    for sub in ("up", "down", "status", "fetch"):
        result = pulse("infra", sub, "--help", state=tmp_path)
        assert result.returncode == 0
        description = result.stdout.split("\n\n")[1].strip()
        assert len(description) > 20, (sub, result.stdout)


def test_version_comes_from_the_installed_metadata(tmp_path: Path) -> None:
    result = pulse("--version", state=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"pulse {version('adoption-pulse')}")


def test_push_to_an_unreachable_grafana_is_one_line(tmp_path: Path, free_port: int) -> None:
    result = pulse("dashboards", "push", "--url", f"http://127.0.0.1:{free_port}", "--token", "t0k3n-secret",
                   state=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot reach Grafana at http://127.0.0.1:{free_port} while finding or creating folder "
        "'Adoption pulse': Connection refused"]
    assert "t0k3n-secret" not in result.stderr


# ------------------------------------------------------------------------------------------- migrate


def test_migrate_applies_once_then_is_up_to_date(tmp_path: Path) -> None:
    names = [path.name for _, path in migration_files()]
    first = pulse("migrate", state=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"applied {', '.join(names)} to database pulse at chdb://{tmp_path}/clickhouse"
    again = pulse("migrate", state=tmp_path)
    assert again.stdout.strip() == f"database pulse at chdb://{tmp_path}/clickhouse is up to date"
    ledger = pulse("query", "SELECT name FROM pulse.schema_migrations FINAL ORDER BY version", "--format", "csv",
                   state=tmp_path)
    assert ledger.stdout.split() == ["name", *names]


def test_migrate_print_lists_the_statements_and_touches_nothing(tmp_path: Path) -> None:
    # an unreachable server: --print must not connect
    result = pulse("migrate", "--print", state=tmp_path, PULSE_CLICKHOUSE_URL="http://u:secret@127.0.0.1:1/analytics")
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert script.startswith("-- bootstrap\nCREATE DATABASE IF NOT EXISTS analytics;")
    for number, path in migration_files():
        assert f"-- {path.name}\n" in script
        assert f"VALUES ({number}, '{path.name}');" in script
    for table in ("payments", "payments_1m", "dossiers_1m", "id_activations_1m", "stream_offsets"):
        assert f"CREATE TABLE IF NOT EXISTS analytics.{table}" in script
    assert "{db}" not in script and "secret" not in script
    assert not (tmp_path / "clickhouse").exists()


def test_migrate_against_an_unreachable_server_is_one_line(tmp_path: Path, free_port: int) -> None:
    result = pulse("migrate", state=tmp_path, PULSE_CLICKHOUSE_URL=f"http://u:pw-9f1@127.0.0.1:{free_port}/pulse")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"Error: migrating the ClickHouse at http://***@127.0.0.1:{free_port}/pulse failed: "
                    "Connection refused")


# ------------------------------------------------------------------------------------------- query


def test_query_on_a_missing_store_says_so_and_creates_nothing(tmp_path: Path) -> None:
    default = pulse("query", "SELECT 1", state=tmp_path)
    assert default.returncode == 1
    assert error_lines(default) == [
        f"Error: no ClickHouse store at {tmp_path}/clickhouse (PULSE_CLICKHOUSE_URL is unset, so "
        "chdb://<PULSE_STATE_DIR>/clickhouse): check the URL, or create the store with `pulse migrate` or a worker"]
    typo = pulse("query", "SELECT 1", state=tmp_path, PULSE_CLICKHOUSE_URL=f"chdb://{tmp_path}/clickhuose")
    assert typo.returncode == 1
    assert f"no ClickHouse store at {tmp_path}/clickhuose (PULSE_CLICKHOUSE_URL is chdb://{tmp_path}/clickhuose)" \
        in typo.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    assert pulse("migrate", state=tmp_path).returncode == 0
    return tmp_path


@pytest.mark.parametrize("sql", [
    "CREATE TABLE pulse.scratch (x UInt8) ENGINE = Memory",
    "INSERT INTO pulse.payments_1m (window_start, province_code, tx_count) VALUES (now(), '01', 5)",
    "DROP TABLE pulse.payments",
    "ALTER TABLE pulse.payments DELETE WHERE 1",
    "INSERT INTO FUNCTION file('written-by-query.csv', 'CSV') SELECT 1",
    "SELECT 1 SETTINGS readonly = 0",
])
def test_query_refuses_to_write(migrated: Path, sql: str) -> None:
    result = pulse("query", sql, state=migrated)
    assert result.returncode == 1
    assert error_lines(result) == ["Error: pulse query only reads: ClickHouse refused a statement that writes, "
                                   "changes the schema or changes settings (the schema is `pulse migrate`'s job)"]
    tables = pulse("query", "SELECT name FROM system.tables WHERE database = 'pulse' ORDER BY name",
                   "--format", "csv", state=migrated).stdout.split()[1:]
    assert "payments" in tables and "scratch" not in tables
    count = pulse("query", "SELECT count() FROM pulse.payments_1m", "--format", "csv", state=migrated)
    assert count.stdout.split() == ["count()", "0"]


def test_query_names_a_missing_database_or_table(migrated: Path) -> None:
    table = pulse("query", "SELECT * FROM pulse.paymnets", state=migrated)
    assert table.returncode == 1
    assert f"table pulse.paymnets does not exist in the ClickHouse at chdb://{migrated}/clickhouse" in table.stderr
    database = pulse("query", "SELECT * FROM plse.payments", state=migrated)
    assert database.returncode == 1
    assert f"database plse does not exist in the ClickHouse at chdb://{migrated}/clickhouse" in database.stderr


def test_query_reads(migrated: Path) -> None:
    result = pulse("query", "SELECT count() AS n, 'ok' AS s FROM pulse.payments", "--format", "json", state=migrated)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().replace(" ", "").replace("\n", "") == '[{"n":0,"s":"ok"}]'
