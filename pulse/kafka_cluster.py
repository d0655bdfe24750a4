"""`pulse infra up --brokers N`: a replicated Kafka cluster (KRaft, every node broker and controller) on
127.0.0.1, from the same jars and configuration template as the single broker of pulse/infra.py.

Ports: node i (1-based) listens on base + 100·(i-1), base being the port of PULSE_KAFKA_BOOTSTRAP (9092:
9092, 9192, 9292), and its controller 1000 above that (10092, 10192, 10292). Topics get replication
factor 3 and the brokers `min.insync.replicas=2`, so with `acks=all` (the project's producers) a write is
acknowledged once two brokers hold it: one broker may die without losing an acknowledged message, and
with two down producers are refused instead of writing to a single copy. State and logs are under
<state dir>/kafka-cluster/broker-i/.
"""
from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pulse import infra
from pulse.kafka_security import kafka_options
from pulse.settings import Settings

REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
MAX_BROKERS = 9
PORT_STEP = 100
CONTROLLER_OFFSET = 1000
# Three brokers beside the worker and tests on a small machine: the single broker's 512 MB is more than
# a local cluster needs.
HEAP_OPTIONS = ("-Xms128m", "-Xmx384m")


@dataclass(frozen=True)
class BrokerNode:
    node_id: int
    port: int
    controller_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def default_nodes(settings: Settings, brokers: int) -> list[BrokerNode]:
    """The documented layout: ports stepped by 100 from the bootstrap port, controllers 1000 higher."""
    if not REPLICATION_FACTOR <= brokers <= MAX_BROKERS:
        raise infra.InfraError(f"a replicated cluster needs {REPLICATION_FACTOR} to {MAX_BROKERS} brokers, "
                               f"not {brokers}")
    base = infra._split_host_port(settings.kafka_bootstrap)[1]
    return [BrokerNode(i, base + PORT_STEP * (i - 1), base + PORT_STEP * (i - 1) + CONTROLLER_OFFSET)
            for i in range(1, brokers + 1)]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports nothing listens on now (held open together, so the kernel cannot repeat one):
    for clusters beside others on a shared machine (tests, measured runs)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_nodes(brokers: int = REPLICATION_FACTOR) -> list[BrokerNode]:
    """Nodes on ports picked free at run time (a broker and a controller port each)."""
    ports = free_ports(2 * brokers)
    return [BrokerNode(i + 1, ports[2 * i], ports[2 * i + 1]) for i in range(brokers)]


def bootstrap(nodes: list[BrokerNode]) -> str:
    return ",".join(node.address for node in nodes)


def cluster_home(settings: Settings) -> Path:
    return settings.state_dir / "kafka-cluster"


def cluster_properties(node: BrokerNode, nodes: list[BrokerNode]) -> dict[str, str]:
    """What a node of the cluster sets over the single-broker template."""
    return {
        "node.id": str(node.node_id),
        "controller.quorum.voters": ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes),
        "listeners": f"PLAINTEXT://{node.address},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.address}",
        "default.replication.factor": str(REPLICATION_FACTOR),
        "min.insync.replicas": str(MIN_INSYNC_REPLICAS),
        "offsets.topic.replication.factor": str(REPLICATION_FACTOR),
        "transaction.state.log.replication.factor": str(REPLICATION_FACTOR),
        "transaction.state.log.min.isr": str(MIN_INSYNC_REPLICAS),
        # a replica that was not in sync never becomes leader: that would drop acknowledged writes
        "unclean.leader.election.enable": "false",
    }


def broker_service(settings: Settings, node: BrokerNode, nodes: list[BrokerNode], cluster_id: str) -> infra.Service:
    """One node: the single-broker service of pulse/infra.py in its own state directory, with the
    cluster's node id, quorum, replication defaults and ports laid over the template."""
    node_settings = settings.model_copy(update={
        "state_dir": cluster_home(settings) / f"broker-{node.node_id}", "kafka_bootstrap": node.address})
    properties = cluster_properties(node, nodes)
    # All nodes must be formatted with one cluster id; the later -t given to the storage tool wins.
    service = infra.kafka_service(node_settings, extra_properties=properties, format_args=("-t", cluster_id))
    service.name = f"kafka-{node.node_id}"
    single_node_command = service.command
    service.command = lambda: _with_heap(single_node_command())
    return service


def _with_heap(command: list[str]) -> list[str]:
    java, *arguments = command
    return [java, *HEAP_OPTIONS, *(a for a in arguments if not a.startswith(("-Xms", "-Xmx")))]


def _cluster_id(settings: Settings) -> str:
    """One id for all nodes, kept with the cluster's state so that a restart reuses it."""
    path = cluster_home(settings) / "cluster.id"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_random_cluster_id())
    return path.read_text().strip()


def _random_cluster_id() -> str:
    """16 random bytes in URL-safe base64 without padding, as `StorageTool random-uuid` prints them; like
    Kafka's own generator it never starts with "-", which the storage tool would read as an option."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def services(settings: Settings, nodes: list[BrokerNode]) -> list[infra.Service]:
    cluster_id = _cluster_id(settings)
    return [broker_service(settings, node, nodes, cluster_id) for node in nodes]


def start(settings: Settings, nodes: list[BrokerNode]) -> list[str]:
    """Start every node at once: a KRaft broker serves only after a majority of controllers has formed a
    quorum, so waiting for the first node before starting the second would never end."""
    lines = _in_parallel([service.start for service in services(settings, nodes)])
    _check_one_cluster(settings, nodes)
    wait_for_brokers(settings.model_copy(update={"kafka_bootstrap": bootstrap(nodes)}), len(nodes))
    return lines


def wait_for_brokers(settings: Settings, count: int, timeout_s: float = infra.START_TIMEOUT_S) -> None:
    """Until the cluster's metadata lists `count` brokers and a controller: a node answers on its port
    before the others know it, and creating topics then fails on an unknown broker id."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    seen = 0
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **kafka_options(settings))
            try:
                cluster = admin.describe_cluster()
            finally:
                admin.close()
            seen = len(cluster["brokers"])
            if seen >= count and cluster.get("controller_id", -1) >= 0:
                return
        except KafkaError:
            pass
        if time.monotonic() > deadline:
            raise infra.InfraError(f"only {seen} of {count} Kafka brokers registered within {timeout_s:.0f} s")
        time.sleep(0.5)


def create_topics(settings: Settings, timeout_s: float = infra.START_TIMEOUT_S) -> list[str]:
    """The project's topics with replication factor 3, retried while the cluster's metadata is still
    settling: right after `wait_for_brokers` a node may still name a controller that its broker list lacks,
    and the admin client then fails with an unknown broker id (seen in about one cluster start in ten)."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return infra.create_topics(settings, replication_factor=REPLICATION_FACTOR)
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _in_parallel(calls: list[Callable[[], str]]) -> list[str]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def _check_one_cluster(settings: Settings, nodes: list[BrokerNode]) -> None:
    expected = _cluster_id(settings)
    for node in nodes:
        meta = cluster_home(settings) / f"broker-{node.node_id}" / "kafka" / "data" / "meta.properties"
        found = dict(line.split("=", 1) for line in meta.read_text().splitlines() if "=" in line)
        if found.get("cluster.id") != expected:
            raise infra.InfraError(f"kafka-{node.node_id} was formatted for cluster {found.get('cluster.id')}, "
                                   f"not {expected}; `pulse infra down --purge` starts afresh")


def up(settings: Settings, brokers: int, with_monitoring: bool = True) -> list[str]:
    nodes = default_nodes(settings, brokers)
    lines = start(settings, nodes)
    lines += [service.start() for service in infra.prometheus_services(settings)] if with_monitoring else []
    cluster_settings = settings.model_copy(update={"kafka_bootstrap": bootstrap(nodes)})
    created = create_topics(cluster_settings)
    infra.wait_for_group_coordinator(cluster_settings)
    lines.append(f"topics: created {', '.join(created)}" if created else "topics: all present")
    lines.append(f"replication factor {REPLICATION_FACTOR}, min.insync.replicas {MIN_INSYNC_REPLICAS}; "
                 f"export PULSE_KAFKA_BOOTSTRAP={bootstrap(nodes)}")
    return lines


def existing_nodes(settings: Settings) -> list[BrokerNode]:
    """The nodes a previous `up --brokers N` left state for (read back from their configuration)."""
    nodes = []
    for config in sorted(cluster_home(settings).glob("broker-*/kafka/server.properties")):
        values = dict(line.split("=", 1) for line in config.read_text().splitlines()
                      if "=" in line and not line.startswith("#"))  # later lines win, as in Java
        node_id = int(values["node.id"])
        listeners = dict(part.split("://") for part in values["listeners"].split(","))
        nodes.append(BrokerNode(node_id, infra._split_host_port(listeners["PLAINTEXT"])[1],
                                infra._split_host_port(listeners["CONTROLLER"])[1]))
    return sorted(nodes, key=lambda node: node.node_id)


def down(settings: Settings, purge: bool = False) -> list[str]:
    nodes = existing_nodes(settings)
    lines = _in_parallel([service.stop for service in services(settings, nodes)]) if nodes else []
    if purge and cluster_home(settings).is_dir():
        shutil.rmtree(cluster_home(settings))
        lines.append(f"purged the Kafka cluster's logs under {cluster_home(settings)}")
    return lines


def status(settings: Settings) -> list[str]:
    nodes = existing_nodes(settings)
    return [service.status() for service in services(settings, nodes)] if nodes else []


def node_service(settings: Settings, node_id: int) -> infra.Service:
    """One node of the cluster a previous `up` started, to stop, kill or start it alone."""
    nodes = existing_nodes(settings)
    return broker_service(settings, next(n for n in nodes if n.node_id == node_id), nodes, _cluster_id(settings))


def kill_node(settings: Settings, node_id: int) -> None:
    """SIGKILL one node (drills and tests): no clean shutdown, no hand-over of its partition leaderships."""
    service = node_service(settings, node_id)
    pid = service.pid()
    if pid is not None:
        os.killpg(pid, signal.SIGKILL)
        infra._reap(pid)
        service.pid_file.unlink(missing_ok=True)
