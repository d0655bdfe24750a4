"""Settings reach child processes through an explicit environment block, and CLI flags never touch os.environ."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pulse.cli import main
from pulse.settings import Settings
from pulse.supervise import Supervisor


def test_child_env_rebuilds_the_same_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [key for key in os.environ if key.startswith("PULSE_")]:
        monkeypatch.delenv(name)
    given = Settings(state_dir=tmp_path, kafka_bootstrap="10.1.2.3:9999", clickhouse_url="http://u:p@h:8123/x",
                     pii_key="k3y", kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN",
                     kafka_sasl_username="svc", kafka_sasl_password="pa ss", chdb_keep_open=True,
                     batch_within_s=0.25, topic_prefix="run-1.")
    env = given.child_env({"PATH": "/bin"})
    assert env["PATH"] == "/bin" and env["PULSE_KAFKA_SASL_PASSWORD"] == "pa ss" and env["PULSE_PII_KEY"] == "k3y"
    assert "PULSE_METRICS_PORT" not in env  # left at its default: the child computes the same one
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    child = Settings()
    assert child.model_dump() == given.model_dump()
    assert child.kafka_sasl_password.get_secret_value() == "pa ss" and child.clickhouse_url == given.clickhouse_url


def test_cli_flags_do_not_change_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULSE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("PULSE_CLICKHOUSE_URL", raising=False)
    before = dict(os.environ)
    result = CliRunner().invoke(main, ["--state-dir", str(tmp_path), "--kafka-bootstrap", "10.9.9.9:1",
                                       "--clickhouse-url", "chdb:///nowhere", "migrate", "--print"])
    assert result.exit_code == 0, result.output
    assert "CREATE DATABASE IF NOT EXISTS pulse;" in result.stdout
    assert dict(os.environ) == before


def test_the_supervisor_hands_its_child_the_block(tmp_path: Path) -> None:
    marker = tmp_path / "seen"
    script = f"import os, pathlib; pathlib.Path({str(marker)!r}).write_text(os.environ['PULSE_KAFKA_BOOTSTRAP'])"
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = Supervisor([sys.executable, "-c", script],
                          env={**os.environ, "PULSE_KAFKA_BOOTSTRAP": "10.7.7.7:7"}).run()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert code == 0 and marker.read_text() == "10.7.7.7:7"
