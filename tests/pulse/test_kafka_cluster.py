"""`pulse infra up --brokers N` without starting brokers: the documented port layout, the broker settings
each node gets, and what is refused (the brokers themselves run in tests/scale_out/)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pulse import infra, kafka_cluster
from pulse.settings import Settings


def test_three_brokers_take_ports_a_hundred_apart_with_controllers_a_thousand_above(tmp_path: Path) -> None:
    nodes = kafka_cluster.default_nodes(Settings(state_dir=tmp_path), 3)
    assert [(n.node_id, n.port, n.controller_port) for n in nodes] == [
        (1, 9092, 10092), (2, 9192, 10192), (3, 9292, 10292)]
    assert kafka_cluster.bootstrap(nodes) == "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"
    moved = kafka_cluster.default_nodes(Settings(state_dir=tmp_path, kafka_bootstrap="127.0.0.1:29092"), 3)
    assert [n.port for n in moved] == [29092, 29192, 29292]


@pytest.mark.parametrize("brokers", [2, 10])
def test_a_cluster_needs_three_to_nine_brokers(tmp_path: Path, brokers: int) -> None:
    with pytest.raises(infra.InfraError, match="3 to 9 brokers"):
        kafka_cluster.default_nodes(Settings(state_dir=tmp_path), brokers)


def test_each_node_is_the_single_broker_service_with_cluster_settings_laid_over(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    nodes = kafka_cluster.default_nodes(settings, 3)
    service = kafka_cluster.broker_service(settings, nodes[1], nodes, "AAAAAAAAAAAAAAAAAAAAAA")
    assert (service.name, service.port) == ("kafka-2", 9192)
    assert service.home == tmp_path / "kafka-cluster" / "broker-2" / "kafka"
    command = service.command()
    assert command[0] == "java" and "-Xmx384m" in command and "-Xmx512m" not in command
    assert command[-2:][0] == "kafka.Kafka"


def test_nodes_are_read_back_from_their_configuration(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    for node_id, port in ((1, 41001), (2, 41101)):
        config = kafka_cluster.cluster_home(settings) / f"broker-{node_id}" / "kafka" / "server.properties"
        config.parent.mkdir(parents=True)
        # as the template and the overrides leave it: the later line wins, as in Java
        config.write_text(f"node.id=1\nlisteners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:10092\n"
                          f"node.id={node_id}\n"
                          f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}\n")
    assert kafka_cluster.existing_nodes(settings) == [
        kafka_cluster.BrokerNode(1, 41001, 41002), kafka_cluster.BrokerNode(2, 41101, 41102)]
    assert kafka_cluster.existing_nodes(Settings(state_dir=tmp_path / "nothing")) == []


def test_the_command_line_refuses_two_brokers_before_starting_anything(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pulse.cli", "infra", "up", "--brokers", "2", "--no-monitoring"],
                            env={"PATH": "/usr/bin:/bin", "PULSE_STATE_DIR": str(tmp_path)}, capture_output=True,
                            text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 1
    assert "a replicated cluster needs 3 to 9 brokers, not 2" in result.stderr
    assert not (tmp_path / "kafka-cluster").exists()


def test_cluster_ids_look_like_kafkas_and_never_start_with_a_dash() -> None:
    ids = {kafka_cluster._random_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") and re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)


def test_every_node_replicates_three_ways_and_acknowledges_with_two(tmp_path: Path) -> None:
    nodes = kafka_cluster.default_nodes(Settings(state_dir=tmp_path), 3)
    properties = kafka_cluster.cluster_properties(nodes[2], nodes)
    assert properties["node.id"] == "3"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:10092,2@127.0.0.1:10192,3@127.0.0.1:10292"
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:9292,CONTROLLER://127.0.0.1:10292"
    assert {key: properties[key] for key in (
        "default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
        "unclean.leader.election.enable")} == {
        "default.replication.factor": "3", "min.insync.replicas": "2", "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3", "transaction.state.log.min.isr": "2",
        "unclean.leader.election.enable": "false"}
