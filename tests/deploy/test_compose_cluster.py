"""Static checks of docker-compose.cluster.yml and its ClickHouse cluster configuration: three KRaft
brokers, two shards of two ClickHouse replicas with three Keepers, two workers, monitoring.

No Docker engine is needed: the files are parsed and checked against each other, against the
single-node docker-compose.yml and against the schema renderer (sinks/cluster.py).
"""
from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pulse.settings import ALL_TOPICS, TOPIC_WINDOWS
from sinks.cluster import cluster_statements, cluster_write_settings
from tests.deploy.test_compose import (
    assert_no_literal_secret,
    command_text,
    environment_of,
    interpolate,
    iter_items,
    iter_strings,
    load_yaml,
    parse_env_file,
    published_ports,
    volume_specs,
)

REPO = Path(__file__).resolve().parents[2]
CLUSTER_FILE = REPO / "docker-compose.cluster.yml"
CONFIG = REPO / "deploy" / "clickhouse-cluster"
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
KEEPERS = ("keeper-1", "keeper-2", "keeper-3")
CLICKHOUSE_NODES = ("clickhouse-s1r1", "clickhouse-s1r2", "clickhouse-s2r1", "clickhouse-s2r2")
WORKERS = ("worker-1", "worker-2")
EXPECTED_SERVICES = {*KAFKA_NODES, "kafka-init", *KEEPERS, *CLICKHOUSE_NODES, "migrate", *WORKERS, "simulator",
                     "prometheus", "alertmanager", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(CLUSTER_FILE)


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def filled_env() -> dict[str, str]:
    return {name: value or f"x{name.lower()}" for name, value in parse_env_file(REPO / ".env.example").items()}


def xml_root(name: str) -> ET.Element:
    return ET.parse(CONFIG / name).getroot()


def remote_servers() -> tuple[str, list[list[str]], list[bool]]:
    """The one cluster of cluster.xml: its name, the hosts of each shard, internal_replication per shard."""
    clusters = list(xml_root("cluster.xml").find("remote_servers"))
    assert len(clusters) == 1, "cluster.xml should define exactly one cluster"
    shards = clusters[0].findall("shard")
    hosts = [[replica.findtext("host") for replica in shard.findall("replica")] for shard in shards]
    internal = [shard.findtext("internal_replication") == "true" for shard in shards]
    return clusters[0].tag, hosts, internal


def test_expected_services(services: dict) -> None:
    assert set(services) == EXPECTED_SERVICES


def _tag(image: str) -> str:
    return image.rsplit(":", 1)[1]


def test_every_image_is_pinned_to_an_exact_release(services: dict) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image and "$" not in image, f"{name}: no fixed image"
        assert re.fullmatch(r"v?\d+(\.\d+){2,3}", _tag(image)), f"{name}: {image} is not an exact release"


def test_images_match_the_single_node_compose_file(services: dict) -> None:
    """Where both files run the same software, the cluster runs the release the single-node file names
    (its tag may only be more precise, e.g. 25.8.8.26 for 25.8)."""
    single = {svc["image"].rsplit(":", 1)[0]: _tag(svc["image"])
              for svc in load_yaml(REPO / "docker-compose.yml")["services"].values()}
    overlapping = 0
    for name, service in services.items():
        repository, tag = service["image"].rsplit(":", 1)
        if repository in single:
            overlapping += 1
            assert tag == single[repository] or tag.startswith(single[repository] + "."), \
                f"{name}: {service['image']} but docker-compose.yml runs {repository}:{single[repository]}"
    keeper = services["keeper-1"]["image"]
    assert _tag(keeper) == _tag(services["clickhouse-s1r1"]["image"]), "Keeper and server from the same release"
    assert overlapping >= len(services) - len(KEEPERS)


def test_bind_mounts_exist_and_are_read_only(services: dict) -> None:
    mounted = set()
    for name, service in services.items():
        for kind, source, _target, read_only in volume_specs(service):
            if kind == "bind":
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
                assert read_only, f"{name}: {source} should be mounted :ro"
                mounted.add((REPO / source).resolve())
    assert {path.resolve() for path in CONFIG.iterdir()} <= mounted, "a config file that nothing mounts"


def test_named_volumes_are_declared_and_not_shared(compose: dict, services: dict) -> None:
    declared = set(compose["volumes"])
    owners: dict[str, str] = {}
    for name, service in services.items():
        for kind, source, _, _ in volume_specs(service):
            if kind == "volume" and source:
                assert source in declared, f"{name}: volume {source} is not declared"
                assert source not in owners, f"{source} is used by {owners[source]} and {name}"
                owners[source] = name


def test_no_secret_is_written_in_the_file(compose: dict, services: dict) -> None:
    for path, key, value in iter_items(compose):
        assert_no_literal_secret("docker-compose.cluster.yml " + "/".join(map(str, path)), key, value)
    for name, service in services.items():
        for key, value in environment_of(service).items():
            assert_no_literal_secret(f"{name}.environment", key, value)
    for text in iter_strings(compose):
        for user, password in re.findall(r"://([^/@\s]*):([^/@\s]*)@", text):
            assert user.startswith("${") and password.startswith("${"), f"URL with literal credentials: {text}"


def test_compose_refuses_an_empty_env_and_every_variable_is_in_env_example(compose: dict, filled_env: dict) -> None:
    strings = list(iter_strings(compose))
    with pytest.raises(LookupError):  # .env.example as shipped: the secrets are empty
        for text in strings:
            interpolate(text, parse_env_file(REPO / ".env.example"))
    for text in strings:
        interpolate(text, filled_env)
    for name in ("CLICKHOUSE_CLUSTER_SECRET", "CLICKHOUSE_INTERSERVER_PASSWORD"):
        assert name in filled_env, f".env.example lacks {name}"
        assert any(f"${{{name}:?" in text for text in strings), f"{name} must be required (:?)"


# --------------------------------------------------------------------------- Kafka


def test_three_kraft_brokers_form_one_quorum(services: dict) -> None:
    envs = {name: environment_of(services[name]) for name in KAFKA_NODES}
    ids = {name: env["KAFKA_NODE_ID"] for name, env in envs.items()}
    assert sorted(ids.values()) == ["1", "2", "3"]
    voters = {f"{ids[name]}@{name}:9093" for name in KAFKA_NODES}
    for name, env in envs.items():
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert services[name]["hostname"] == name
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1


def test_brokers_replicate_every_write_to_two_of_three(services: dict) -> None:
    for name in KAFKA_NODES:
        env = environment_of(services[name])
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
        assert re.search(r"-Xmx\d+[mg]", env["KAFKA_HEAP_OPTS"])


def test_kafka_init_creates_replicated_topics(services: dict) -> None:
    script = command_text(services["kafka-init"])
    assert "--replication-factor 3" in script and "--config min.insync.replicas=2" in script
    created = re.findall(r"^\s*create (\S+)", script, re.M)
    assert sorted(created) == sorted(ALL_TOPICS)
    assert re.search(rf"create {re.escape(TOPIC_WINDOWS)} --config cleanup.policy=compact", script)
    assert set(services["kafka-init"]["depends_on"]) == set(KAFKA_NODES)


def test_pulse_services_know_all_three_brokers(services: dict, filled_env: dict) -> None:
    for name in (*WORKERS, "simulator", "migrate"):
        bootstrap = interpolate(environment_of(services[name])["PULSE_KAFKA_BOOTSTRAP"], filled_env)
        assert bootstrap.split(",") == [f"{node}:9092" for node in KAFKA_NODES], name


# --------------------------------------------------------------------------- ClickHouse and Keeper


def test_keeper_ensemble_matches_the_keeper_services(services: dict) -> None:
    keeper = xml_root("keeper.xml").find("keeper_server")
    servers = {server.findtext("hostname"): server.findtext("id") for server in keeper.find("raft_configuration")}
    assert set(servers) == set(KEEPERS)
    assert keeper.find("server_id").get("from_env") == "KEEPER_SERVER_ID"
    for name in KEEPERS:
        assert services[name]["hostname"] == name
        assert environment_of(services[name])["KEEPER_SERVER_ID"] == servers[name], name
    zookeeper = xml_root("cluster.xml").find("zookeeper")
    nodes = {(node.findtext("host"), node.findtext("port")) for node in zookeeper.findall("node")}
    assert nodes == {(name, keeper.findtext("tcp_port")) for name in KEEPERS}


def test_remote_servers_match_the_clickhouse_services_and_their_macros(services: dict) -> None:
    _, shards, internal = remote_servers()
    assert shards == [list(CLICKHOUSE_NODES[:2]), list(CLICKHOUSE_NODES[2:])]
    assert all(internal), "each shard must replicate internally (Replicated tables), not by double writes"
    macros = xml_root("cluster.xml").find("macros")
    assert macros.find("shard").get("from_env") == "CLICKHOUSE_SHARD"
    assert macros.find("replica").get("from_env") == "CLICKHOUSE_REPLICA"
    replicas = []
    for shard_number, hosts in enumerate(shards, 1):
        for host in hosts:
            env = environment_of(services[host])
            assert env["CLICKHOUSE_SHARD"] == str(shard_number), host
            replicas.append(env["CLICKHOUSE_REPLICA"])
            assert services[host]["hostname"] == host
            assert set(services[host]["depends_on"]) == set(KEEPERS)
    assert len(set(replicas)) == len(replicas), "replica macros must be unique"


def test_cluster_secrets_come_from_the_environment(services: dict) -> None:
    cluster = xml_root("cluster.xml")
    secret = cluster.find("remote_servers")[0].find("secret")
    password = cluster.find("interserver_http_credentials").find("password")
    for element, variable in ((secret, "CLICKHOUSE_CLUSTER_SECRET"), (password, "CLICKHOUSE_INTERSERVER_PASSWORD")):
        assert element.get("from_env") == variable and not (element.text or "").strip()
        for host in CLICKHOUSE_NODES:
            assert environment_of(services[host])[variable] == f"${{{variable}:?set {variable} in .env}}"


def test_the_migrate_service_renders_for_the_configured_cluster(services: dict) -> None:
    name, _, _ = remote_servers()
    command = services["migrate"]["command"]
    assert command[:2] == ["migrate", "--cluster"] and command[2] == name
    statements = cluster_statements(command[2])
    ddl = [statement for statement in statements if not statement.startswith("INSERT")]  # 0004's backfill
    assert ddl and all(f"ON CLUSTER {name}" in statement for statement in ddl)
    assert any(f"ENGINE = Distributed({name}, pulse, payments_local" in statement for statement in statements)
    for worker in WORKERS:
        assert services[worker]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_write_settings_wait_for_every_replica_of_a_shard() -> None:
    _, shards, _ = remote_servers()
    profile = xml_root("users.xml").find("profiles").find("default")
    configured = {child.tag: int(child.text) for child in profile}
    assert {len(hosts) for hosts in shards} == {2}
    assert configured == cluster_write_settings(len(shards[0]))


def test_workers_write_through_different_nodes(services: dict, filled_env: dict) -> None:
    hosts = []
    for name in WORKERS:
        url = urlsplit(interpolate(environment_of(services[name])["PULSE_CLICKHOUSE_URL"], filled_env))
        assert (url.scheme, url.port, url.path) == ("http", 8123, "/pulse")
        assert (url.username, url.password) == (filled_env["CLICKHOUSE_USER"], filled_env["CLICKHOUSE_PASSWORD"])
        hosts.append(url.hostname)
    assert set(hosts) <= set(CLICKHOUSE_NODES) and len(set(hosts)) == 2
    assert {port for name in WORKERS for _, port, _ in published_ports(services[name])} == {6066, 6068}


def test_grafana_reaches_clickhouse_under_its_provisioned_name(services: dict) -> None:
    datasources = load_yaml(REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "datasources.yml")
    host = next(source["jsonData"]["host"] for source in datasources["datasources"]
                if source["type"].endswith("clickhouse-datasource"))
    assert host in services["clickhouse-s1r1"]["networks"]["default"]["aliases"]


def test_prometheus_scrapes_both_workers_and_its_config_is_valid(services: dict) -> None:
    mounts = {target: source for _, source, target, _ in volume_specs(services["prometheus"])}
    config = REPO / mounts["/etc/prometheus/prometheus.yml"]
    scraped = load_yaml(config)["scrape_configs"]
    worker_targets = next(job for job in scraped if job["job_name"] == "pulse-worker")["static_configs"][0]["targets"]
    assert sorted(worker_targets) == [f"{name}:6066" for name in WORKERS]
    result = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
