"""A replicated Kafka cluster for the scale-out tests (issue 15): three KRaft nodes from the same jars as
the single test broker, on ports picked free at run time, started once for this folder and stopped at
the end (also when a test fails). These are slow integration tests: real brokers, workers and chDB."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from pulse import infra, kafka_cluster
from pulse.settings import ALL_TOPICS, Settings
from tests.support.services import PulseEnv

PARTITIONS = 12
HEALTHY_TIMEOUT_S = 120


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts real services and takes a minute or more")
    config.addinivalue_line("markers", "integration: runs against real Kafka brokers, workers and chDB")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "scale_out" in item.nodeid:
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.integration)



def stored_count(env: PulseEnv) -> int:
    """Messages the test's group has stored, or -1 while the admin call meets a broker or coordinator
    that just went away."""
    try:
        return env.stored_count()
    except KafkaError:
        return -1


def wait_until_healthy(settings: Settings, timeout_s: float = HEALTHY_TIMEOUT_S) -> None:
    """Every partition of the project's topics and of the group offsets topic has a leader and all three
    replicas in sync (a new consumer group's coordinator may be any partition of the offsets topic)."""
    deadline = time.monotonic() + timeout_s
    infra.wait_for_group_coordinator(settings, timeout_s)  # also creates the offsets topic
    while True:
        lagging = []
        try:
            admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10000)
            try:
                for topic in admin.describe_topics([*ALL_TOPICS, "__consumer_offsets"]):
                    lagging += [(topic["topic"], p["partition_index"]) for p in topic["partitions"]
                                if p["leader_id"] < 0 or len(p["isr_nodes"]) < kafka_cluster.REPLICATION_FACTOR]
            finally:
                admin.close()
        except Exception as error:
            lagging = [str(error)]
        if not lagging:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the Kafka cluster did not become healthy in {timeout_s} s: {lagging[:5]}")
        time.sleep(1)


@pytest.fixture(scope="session")
def kafka_cluster_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    nodes = kafka_cluster.free_nodes()
    settings = Settings(state_dir=tmp_path_factory.mktemp("pulse-kafka-cluster"),
                        kafka_bootstrap=kafka_cluster.bootstrap(nodes), topic_partitions=PARTITIONS)
    try:
        kafka_cluster.start(settings, nodes)
        kafka_cluster.create_topics(settings)
        wait_until_healthy(settings)
        yield settings
    finally:
        kafka_cluster.down(settings)


@pytest.fixture
def cluster(kafka_cluster_settings: Settings) -> Iterator[Settings]:
    """The cluster, healthy again after each test (a test may have stopped brokers)."""
    yield kafka_cluster_settings
    for service in kafka_cluster.services(kafka_cluster_settings, kafka_cluster.existing_nodes(kafka_cluster_settings)):
        if service.pid() is None:
            service.start()
    wait_until_healthy(kafka_cluster_settings)
