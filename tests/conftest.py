"""Session fixtures that start real services once (an Apache Kafka broker on its own port and state), and the
cost markers: every test is `integration` (it needs a broker), `slow` (marked so) or `unit` (neither)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulse import infra
from pulse.settings import Settings
from sinks.client import Warehouse
from sinks.sink import ClickHouseSink
from tests.support.services import PulseEnv, WorkerProcess, free_tcp_port

TEST_KAFKA_PORT = int(os.environ.get("PULSE_TEST_KAFKA_PORT", "19092"))
# Fixtures that start or use a Kafka broker; a test that asks for one, directly or through another fixture, is
# an integration test. tests/pulse/test_kafka_security.py starts its own secured broker (`secured_broker`).
BROKER_FIXTURES = frozenset({"kafka_settings", "pulse_env", "secured_broker"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by what it costs, from the fixtures it uses (`pytest -m unit` needs no broker)."""
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("integration") is None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    state = tmp_path_factory.mktemp("pulse-kafka")
    settings = Settings(state_dir=state, kafka_bootstrap=f"127.0.0.1:{TEST_KAFKA_PORT}")
    infra.up(settings, with_monitoring=False)
    try:
        yield settings
    finally:
        infra.down(settings)


@pytest.fixture
def pulse_env(kafka_settings: Settings, tmp_path: Path) -> Iterator[PulseEnv]:
    env = PulseEnv(state_dir=tmp_path / "state", bootstrap=kafka_settings.kafka_bootstrap)
    env.start_from_now()
    yield env
    while WorkerProcess.started:  # a test that failed half-way leaves no worker behind
        WorkerProcess.started.pop().kill()


@pytest.fixture
def free_port() -> int:
    return free_tcp_port()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[ClickHouseSink]:
    """A sink on a fresh embedded store of the test's own."""
    sink = ClickHouseSink(Warehouse(f"chdb://{tmp_path / 'ch'}", keep_open=True))
    yield sink
    sink.close()
