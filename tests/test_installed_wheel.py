"""SLOW INTEGRATION TEST: the package as a user installs it, outside the repository.

It builds the wheel from a copy of the checkout, installs it with its whole dependency closure (pinned by
deploy/constraints.txt, from the package index or pip's cache) into a fresh virtual environment WITHOUT
the system site-packages, in a temporary folder, and runs the console script there with the temporary
folder as working directory and a clean environment (no PYTHONPATH): so nothing can come from the
checkout or from the development environment. Then, in that environment:

- `pulse --version`, `pulse --help`, `pulse vietqr decode`, `pulse simulate --out`, `pulse dashboards build`;
- `pulse migrate` and `pulse query` on an embedded store in the temporary folder, and a short supervised
  `pulse worker` against the test broker fed by `pulse replay`, its totals read back with `pulse query`;
- the default install imports the real urllib3 (not urllib3-future, which grafana-client would bring),
  and clickhouse-connect's HTTP pool comes from it; `dashboards push` says which extra it needs.

About 1-2 minutes: the install is most of it (pip's cache makes it ~25 s here).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pulse import infra
from pulse.settings import Settings
from tests.support.services import PulseEnv, wait_for
from tests.support.truth import expected_windows

REPO = Path(__file__).resolve().parents[1]
# The import names the wheel installs (README, "How it is installed"): exactly these, nothing else.
TOP_LEVEL_PACKAGES = {"pulse", "schemas", "simulators", "streams", "sinks"}
# Files that are not code but that commands read at run time.
PACKAGE_DATA = ("schemas/data/*.csv", "sinks/migrations/*.sql", "simulators/scenarios/*.toml",
                "pulse/kafka_broker/*")
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
COPY_IGNORES = shutil.ignore_patterns(".git", ".pulse", "build", "dist", "*.egg-info", "__pycache__",
                                      ".pytest_cache", ".hypothesis", "*.jsonl.gz")
# Prints which urllib3 the interpreter imports and which one clickhouse-connect's HTTP pool is built from.
URLLIB3_PROBE = """
import importlib.metadata as md, importlib.util, json, sys, urllib3
from clickhouse_connect.driver import httputil
manager = httputil.get_pool_manager()
dist = md.distribution("urllib3")
dist_files = {str(dist.locate_file(f)) for f in dist.files or []}
print(json.dumps({
    "imported_version": urllib3.__version__,
    "distribution_version": dist.version,
    "providers": sorted(md.packages_distributions().get("urllib3", [])),
    "pool_from_urllib3_distribution": sys.modules[type(manager).__module__].__file__ in dist_files,
    "fork_installed": importlib.util.find_spec("urllib3_future") is not None,
}))
"""

pytestmark = pytest.mark.slow


@dataclass
class Installed:
    root: Path  # the temporary folder: working directory of every command
    venv: Path
    wheel: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: the venv first on PATH, no PYTHONPATH, no PULSE_* from the caller."""
        return {"PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.root),
                "LANG": "C.UTF-8", "PULSE_STATE_DIR": str(self.root / "state"), "PULSE_PII_KEY": "wheel-test",
                "PULSE_METRICS_PORT": "0", **extra}

    def pulse(self, *args: str, timeout: float = 180, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.venv / "bin" / "pulse"), *args], cwd=self.root, env=self.env(**extra),
                                capture_output=True, text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, f"pulse {' '.join(args)}: exit {result.returncode}\n{result.stderr[-3000:]}"
        return result


def build_wheel(out: Path) -> Path:
    source = out / "source"
    shutil.copytree(REPO, source, ignore=COPY_IGNORES)  # the build writes build/ next to its sources
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                   check=True, timeout=600, capture_output=True)
    (wheel,) = out.glob("adoption_pulse-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed-wheel")
    assert not root.resolve().is_relative_to(REPO), "the test folder must be outside the repository"
    wheel = build_wheel(root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # pip keeps its own configuration (index, cache, certificates) from the caller's environment.
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c",
                    str(REPO / "deploy" / "constraints.txt"), str(wheel)],
                   check=True, timeout=900, capture_output=True, cwd=root)
    return Installed(root=root, venv=venv, wheel=wheel)


def test_the_wheel_holds_exactly_the_packages_and_every_file_of_them(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == TOP_LEVEL_PACKAGES
    # Every module and data file of those packages in the checkout is in the wheel (no subpackage left out).
    in_checkout = {path.relative_to(REPO).as_posix() for package in TOP_LEVEL_PACKAGES
                   for path in (REPO / package).rglob("*")
                   if path.is_file() and "__pycache__" not in path.parts}
    assert in_checkout - names == set()
    for pattern in PACKAGE_DATA:
        assert list(REPO.glob(pattern)), pattern
    assert "pulse/dashboards/build.py" in names and "pulse/kafka_broker/pom.xml" in names


def test_every_top_level_package_of_the_checkout_is_packaged() -> None:
    """A new top-level package must be added here and to pyproject's discovery on purpose (README: "How it
    is installed"), or it would be left out of the wheel."""
    in_checkout = {init.parent.name for init in REPO.glob("*/__init__.py")} - {"tests"}
    assert in_checkout == TOP_LEVEL_PACKAGES
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert sorted(setuptools["packages"]["find"]["include"]) == sorted(f"{name}*" for name in TOP_LEVEL_PACKAGES)


def test_pulse_imports_from_the_virtual_environment(installed: Installed) -> None:
    where = subprocess.run([str(installed.python), "-c", "import pulse, sinks; print(pulse.__file__); "
                            "print(sinks.__file__)"], cwd=installed.root, env=installed.env(),
                           capture_output=True, text=True, check=True, timeout=60).stdout.split()
    site = installed.venv / "lib"
    assert all(Path(path).is_relative_to(site) for path in where), where
    assert not any(Path(path).is_relative_to(REPO) for path in where)


def test_version_and_help(installed: Installed) -> None:
    assert installed.pulse("--version").stdout.strip() == f"pulse {VERSION}"
    help_text = installed.pulse("--help").stdout
    for command in ("worker", "migrate", "query", "simulate", "dashboards", "infra", "vietqr"):
        assert re.search(rf"^\s+{command}\s", help_text, re.MULTILINE), command


def test_infra_runs_a_broker_from_the_packaged_config(installed: Installed, free_port: int) -> None:
    """`pulse infra up|status|down` outside a checkout: the broker's template, log4j config and pom come
    from the installed package (the jars from the machine's cache, so nothing is downloaded)."""
    env = {"PULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port}", "PULSE_KAFKA_LIBS": str(infra.ensure_kafka_jars()),
           "PULSE_STATE_DIR": str(installed.root / "infra-state")}
    assert installed.pulse("infra", "fetch", **env).stdout.strip() == f"Kafka jars in {env['PULSE_KAFKA_LIBS']}"
    try:
        up = installed.pulse("infra", "up", **env).stdout
        assert "kafka: up (pid" in up and "topics: created" in up
        status = installed.pulse("infra", "status", **env).stdout.split()
        assert status[:2] == ["kafka", "up"]
        config = (installed.root / "infra-state" / "kafka" / "server.properties").read_text()
        assert f"listeners=PLAINTEXT://127.0.0.1:{free_port}" in config
    finally:
        assert installed.pulse("infra", "down", **env).stdout.strip() == "kafka: down"


def test_vietqr_decode(installed: Installed) -> None:
    vector = json.loads((REPO / "tests" / "data" / "vietqr_vectors.jsonl").read_text(encoding="utf-8").splitlines()[1])
    fields = json.loads(installed.pulse("vietqr", "decode", vector["payload"]).stdout)
    assert (fields["bank_bin"], fields["account"], fields["amount"]) == (vector["bin"], vector["account"],
                                                                         vector["amount"])


def test_simulate_writes_the_same_bytes_as_the_checkout(installed: Installed, tmp_path: Path) -> None:
    out = installed.root / "sim.jsonl"
    installed.pulse("simulate", "--events", "1000", "--seed", "7", "--out", str(out))
    assert len(out.read_bytes().splitlines()) >= 1000
    reference = tmp_path / "reference.jsonl"
    subprocess.run([sys.executable, "-m", "pulse.cli", "simulate", "--events", "1000", "--seed", "7", "--out",
                    str(reference)], cwd=REPO, env={**os.environ, "PULSE_PII_KEY": "wheel-test"}, check=True,
                   capture_output=True, timeout=180)
    assert out.read_bytes() == reference.read_bytes()


def test_dashboards_build_outside_a_checkout(installed: Installed) -> None:
    written = installed.pulse("dashboards", "build").stdout.split()
    out_dir = installed.root / "grafana-dashboards"
    assert sorted(Path(path).name for path in written) == sorted(p.name for p in out_dir.glob("*.json"))
    committed = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
    assert [p.name for p in committed] == sorted(p.name for p in out_dir.glob("*.json"))
    for path in committed:
        assert (out_dir / path.name).read_bytes() == path.read_bytes(), path.name


def test_the_default_install_runs_on_the_real_urllib3(installed: Installed) -> None:
    probe = json.loads(subprocess.run([str(installed.python), "-c", URLLIB3_PROBE], cwd=installed.root,
                                      env=installed.env(), capture_output=True, text=True, check=True,
                                      timeout=60).stdout)
    pinned = re.search(r"^urllib3==(\S+)$", (REPO / "deploy" / "constraints.txt").read_text(), re.MULTILINE)
    assert probe == {"imported_version": pinned.group(1), "distribution_version": pinned.group(1),
                     "providers": ["urllib3"], "pool_from_urllib3_distribution": True, "fork_installed": False}


def test_the_urllib3_probe_sees_the_fork_where_grafana_client_is_installed() -> None:
    """The same probe in the development environment (`.[test]` includes the grafana extra): it tells the
    fork apart, so the assertion above can fail."""
    probe = json.loads(subprocess.run([sys.executable, "-c", URLLIB3_PROBE], capture_output=True, text=True,
                                      check=True, timeout=60).stdout)
    assert probe["fork_installed"] and "urllib3-future" in probe["providers"]
    assert probe["imported_version"] != probe["distribution_version"]


def test_dashboards_push_names_the_missing_extra(installed: Installed) -> None:
    result = installed.pulse("dashboards", "push", "--url", "http://127.0.0.1:9", "--token", "t", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: `pulse dashboards push` needs grafana-client, which the default install leaves out: "
        "pip install 'adoption-pulse[grafana]'"]


@pytest.fixture
def worker_env(installed: Installed, kafka_settings: Settings) -> Iterator[tuple[PulseEnv, dict[str, str]]]:
    """A consumer group that starts at the current log ends, and a chDB store in the temporary folder."""
    run = installed.root / f"run-{uuid.uuid4().hex[:6]}"
    group = PulseEnv(state_dir=run, bootstrap=kafka_settings.kafka_bootstrap)
    group.start_from_now()
    yield group, {"PULSE_STATE_DIR": str(run), "PULSE_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
                  "PULSE_CONSUMER_GROUP": group.group, "PULSE_CLICKHOUSE_URL": f"chdb://{run / 'store'}",
                  "PULSE_BATCH_WITHIN_S": "0.3"}


def query_json(installed: Installed, sql: str, env: dict[str, str]) -> list[dict]:
    return json.loads(installed.pulse("query", sql, "--format", "json", **env).stdout)


def test_worker_and_query_from_the_installed_package(installed: Installed,
                                                     worker_env: tuple[PulseEnv, dict[str, str]]) -> None:
    group, env = worker_env
    events = installed.root / "events.jsonl"
    installed.pulse("simulate", "--events", "1000", "--seed", "3", "--out", str(events))

    missing = installed.pulse("query", "SELECT 1", check=False, **env)
    assert missing.returncode == 1 and "no ClickHouse store at" in missing.stderr
    assert not (installed.root / env["PULSE_STATE_DIR"] / "store").exists(), "pulse query created a store"

    log = (installed.root / "worker.log").open("wb")
    worker = subprocess.Popen([str(installed.venv / "bin" / "pulse"), "worker"], cwd=installed.root,
                              env=installed.env(**env), stdout=log, stderr=subprocess.STDOUT)
    try:
        # The worker migrates when it starts: the tables are there (and empty) before any event arrives.
        def tables_exist() -> bool:
            return installed.pulse("query", "SELECT count() AS n FROM pulse.payments", check=False,
                                   **env).returncode == 0
        wait_for(tables_exist, 180, "the worker's migrations", poll_s=1.0)
        assert query_json(installed, "SELECT count() AS n FROM pulse.payments_1m", env) == [{"n": 0}]
        installed.pulse("replay", "--from-file", str(events), "--wait", "--timeout", "240", timeout=300, **env)
        assert group.stored_count() == 1000
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        log.close()
    assert code == 0, (installed.root / "worker.log").read_text(errors="replace")[-3000:]

    truth = expected_windows(events)
    for table, measures in (("payments_1m", ("tx_count", "success_count", "amount_vnd")),
                            ("dossiers_1m", ("submitted_online", "completed", "completed_on_time")),
                            ("id_activations_1m", ("activations", "level2_activations"))):
        expected = {m: sum(window[m] for window in truth.windows[table].values()) for m in measures}
        expected["windows"] = len(truth.windows[table])
        sums = ", ".join(f"toInt64(sum({m})) AS {m}" for m in measures)
        (stored,) = query_json(installed, f"SELECT {sums}, toInt64(count()) AS windows FROM pulse.{table} FINAL",
                               env)
        assert stored == expected, table
    assert truth.accepted == 1000  # no faults: every event is counted once

    payments = sum(window["tx_count"] for window in truth.windows["payments_1m"].values())
    refused = installed.pulse("query", "DROP TABLE pulse.payments", check=False, **env)
    assert refused.returncode == 1 and "pulse query only reads" in refused.stderr
    assert query_json(installed, "SELECT toInt64(count()) AS n FROM pulse.payments", env) == [{"n": payments}]
    assert installed.pulse("migrate", **env).stdout.strip().endswith("is up to date")
