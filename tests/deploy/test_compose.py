"""Static checks of the container deployment: docker-compose.yml, Dockerfile, .dockerignore,
.env.example, the compose Prometheus config and the Grafana provisioning files.

No Docker engine is needed: the files are parsed and checked against each other.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / ".env.example"
PROM_COMPOSE = REPO / "deploy" / "prometheus" / "prometheus.compose.yml"
PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = PROVISIONING / "dashboards" / "dashboards.yml"
READER_USERS = REPO / "deploy" / "clickhouse" / "users.d" / "pulse-reader.xml"
# the read-only ClickHouse user; its name is fixed by the users.d file (an XML element name cannot come from
# the environment), its password comes from .env
READER_USER = "pulse_reader"

EXPECTED_SERVICES = {
    "kafka",
    "kafka-init",
    "clickhouse",
    "migrate",
    "grafana",
    "prometheus",
    "alertmanager",
    "worker",
    "simulator",
}
# published host port -> service that owns it
EXPECTED_PORTS = {
    9092: "kafka",
    8123: "clickhouse",
    3000: "grafana",
    9090: "prometheus",
    9093: "alertmanager",
    6066: "worker",
}
TOPICS = (
    "pulse.payments.vietqr",
    "pulse.dossiers.events",
    "pulse.identity.activations",
    "pulse.deadletter",
    "pulse.windows",
)
# names whose values are secrets: they may only come from the environment (.env)
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|_KEY$|^KEY$|APIKEY|API_KEY)", re.IGNORECASE)
VAR_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# a value that is exactly one interpolation, without a default (`${X}`, `${X:?msg}`, `${X?msg}`)
PURE_INTERPOLATION = re.compile(r"^\$\{(" + VAR_NAME + r")(:?\?[^}]*)?\}$")


# --------------------------------------------------------------------------- helpers


def load_yaml(path: Path):
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict), f"{path.relative_to(REPO)} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    svcs = compose.get("services")
    assert isinstance(svcs, dict) and svcs, "docker-compose.yml has no services"
    return svcs


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


def parse_env_file(path: Path) -> dict[str, str]:
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    values: dict[str, str] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"(?:export\s+)?(" + VAR_NAME + r")=(.*)", line)
        assert m, f"{path.name}:{n}: not a NAME=value line: {raw!r}"
        name, value = m.group(1), m.group(2).strip()
        assert name not in values, f"{path.name}:{n}: {name} defined twice"
        values[name] = value.strip("'\"")
    return values


def iter_strings(node):
    """Every string scalar (keys and values) in a parsed YAML document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(k, str):
                yield k
            yield from iter_strings(v)
    elif isinstance(node, list):
        for item in node:
            yield from iter_strings(item)
    elif isinstance(node, str):
        yield node


def iter_items(node, path=()):
    """(path, key, value) for every mapping entry in a parsed YAML document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, k, v
            yield from iter_items(v, path + (k,))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from iter_items(item, path + (i,))


def referenced_vars(text: str) -> set[str]:
    """Variables compose would interpolate in a string (`$$` is a literal dollar)."""
    text = text.replace("$$", "")
    braced = set(re.findall(r"\$\{(" + VAR_NAME + r")", text))
    bare = set(re.findall(r"\$(" + VAR_NAME + r")", text))
    return braced | bare


def interpolate(text: str, env: dict[str, str]) -> str:
    """A small model of compose interpolation: ${X}, ${X:-d}, ${X-d}, ${X:?e}, ${X?e}, $$."""

    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("name") is None:
            raise ValueError(f"invalid interpolation {m.group(0)!r} (write $$ for a literal $)")
        name, op, arg = m.group("name"), m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise LookupError(f"{name}: {arg}")
            return value
        if op in (":-", "-"):
            if value is None or (op == ":-" and value == ""):
                return arg
            return value
        return value or ""

    pattern = re.compile(
        r"\$\$|\$\{(?P<name>" + VAR_NAME + r")(?:(?P<op>:\?|\?|:-|-)(?P<arg>[^}]*))?\}|\$\{[^}]*\}?"
    )
    return pattern.sub(repl, text)


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, _, value = str(item).partition("=")
            out[key] = value
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def volume_specs(service: dict):
    """(kind, source, target, read_only) for each volume entry of a service."""
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            yield vol.get("type"), vol.get("source"), vol.get("target"), bool(vol.get("read_only"))
            continue
        parts = str(vol).split(":")
        assert 1 <= len(parts) <= 3, f"unexpected volume syntax {vol!r}"
        if len(parts) == 1:
            yield "volume", None, parts[0], False
            continue
        source, target = parts[0], parts[1]
        mode = parts[2].split(",") if len(parts) == 3 else []
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        yield kind, source, target, "ro" in mode


def published_ports(service: dict):
    """(host_ip, host_port, container_port) for each published port of a service."""
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            published = port.get("published")
            assert published is not None, f"port without published host port: {port}"
            yield port.get("host_ip"), int(published), int(port["target"])
            continue
        spec = str(port).split("/")[0]
        parts = spec.rsplit(":", 2)
        assert len(parts) in (2, 3), f"port {port!r} has no explicit host port"
        host_ip = parts[0] if len(parts) == 3 else None
        yield host_ip, int(parts[-2]), int(parts[-1])


def healthcheck_text(service: dict) -> str:
    hc = service.get("healthcheck") or {}
    test = hc.get("test")
    if isinstance(test, list):
        return " ".join(str(t) for t in test)
    return str(test or "")


def command_text(service: dict) -> str:
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        if isinstance(value, list):
            parts.extend(str(v) for v in value)
        elif value:
            parts.append(str(value))
    return "\n".join(parts)


def provisioning_files() -> list[Path]:
    files = sorted(p for p in PROVISIONING.rglob("*") if p.suffix in (".yml", ".yaml"))
    assert files, "no Grafana provisioning files"
    return files


def dockerfile_instructions() -> list[tuple[str, str]]:
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = pending + stripped
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


# --------------------------------------------------------------------------- compose: services and images


def test_expected_services(services):
    assert set(services) == EXPECTED_SERVICES


def test_every_image_is_pinned(services):
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name}: no image (services built locally must still name a pinned image tag)"
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        assert ":" in last, f"{name}: image {image!r} has no tag"
        tag = last.split(":", 1)[1]
        assert tag and tag != "latest" and "latest" not in tag, f"{name}: image {image!r} is not pinned"
        assert "$" not in image, f"{name}: image {image!r} depends on the environment"


def test_every_image_tag_is_an_exact_version(services):
    """A tag such as `25.8` or `3.11-slim` moves under you; an exact release (or a digest) does not."""
    for name, svc in services.items():
        image = svc["image"]
        if "@sha256:" in image:
            continue
        tag = image.rsplit("/", 1)[-1].split(":", 1)[1]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+(\.\d+)?", tag), f"{name}: image {image!r} is not an exact version"


def test_third_party_images(services):
    assert services["kafka"]["image"] == "apache/kafka:3.9.1"
    assert services["kafka-init"]["image"] == services["kafka"]["image"]
    assert re.fullmatch(r"clickhouse/clickhouse-server:25\.8\.\d+\.\d+", services["clickhouse"]["image"])
    assert re.fullmatch(r"grafana/grafana:12\.\d+\.\d+", services["grafana"]["image"])
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["alertmanager"]["image"].startswith("prom/alertmanager:v")


def test_worker_and_simulator_are_built_from_the_dockerfile(services):
    for name in ("worker", "simulator"):
        build = services[name].get("build")
        assert build, f"{name}: not built"
        context = build if isinstance(build, str) else build.get("context")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (REPO / context).resolve() == REPO, f"{name}: build context is not the repository root"
        assert (REPO / context / dockerfile).is_file(), f"{name}: {dockerfile} missing"
    assert services["worker"]["image"] == services["simulator"]["image"]
    assert services["worker"]["command"] == ["worker"]
    command = services["simulator"]["command"]
    assert command[:3] == ["simulate", "--rate", "500"]
    assert "--events" not in command and "--duration" not in command, "the simulator must run forever"


# --------------------------------------------------------------------------- compose: mounts and ports


def test_bind_mounts_exist_in_the_repo_and_are_read_only(services):
    binds = 0
    for name, svc in services.items():
        for kind, source, target, read_only in volume_specs(svc):
            if kind != "bind":
                continue
            binds += 1
            assert not source.startswith(("/", "~")), f"{name}: bind mount {source} is outside the repository"
            host = (REPO / source).resolve()
            assert host.is_relative_to(REPO), f"{name}: bind mount {source} escapes the repository"
            # a missing source would make docker create an empty directory in its place
            assert host.exists(), f"{name}: bind-mounted {source} does not exist"
            assert read_only, f"{name}: bind mount {source} -> {target} should be read-only (:ro)"
    assert binds >= 5


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for kind, source, _target, _ in volume_specs(svc):
            if kind == "volume" and source:
                assert source in declared, f"{name}: volume {source} is not declared under volumes:"


def test_mount_targets(services):
    def binds(name):
        return {
            target: (REPO / source).resolve()
            for kind, source, target, _ in volume_specs(services[name])
            if kind == "bind"
        }

    grafana = binds("grafana")
    assert grafana["/etc/grafana/provisioning"] == PROVISIONING.resolve()
    assert grafana["/var/lib/grafana/dashboards"] == (REPO / "deploy/grafana/dashboards").resolve()
    assert grafana["/var/lib/grafana/dashboards"].is_dir()

    prometheus = binds("prometheus")
    assert prometheus["/etc/prometheus/prometheus.yml"] == PROM_COMPOSE.resolve()
    assert prometheus["/etc/prometheus/rules"] == (REPO / "deploy/prometheus/rules").resolve()
    assert prometheus["/etc/prometheus/rules"].is_dir()
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"].get("command", [])

    alertmanager = binds("alertmanager")
    assert alertmanager["/etc/alertmanager/pulse"] == (REPO / "deploy/alertmanager").resolve()
    assert (alertmanager["/etc/alertmanager/pulse"] / "alertmanager.yml.tmpl").is_file()


def test_ports_are_unique_and_expected(services):
    seen: dict[int, str] = {}
    for name, svc in services.items():
        for host_ip, host_port, container_port in published_ports(svc):
            assert host_port not in seen, f"host port {host_port} published by {seen[host_port]} and {name}"
            seen[host_port] = name
            assert host_ip == "127.0.0.1", f"{name}: port {host_port} should bind to 127.0.0.1"
            assert host_port == container_port, f"{name}: {host_port}->{container_port}"
    assert seen == EXPECTED_PORTS


# --------------------------------------------------------------------------- compose: variables and secrets


def test_every_variable_is_documented_in_env_example(compose, env_example):
    used: set[str] = set()
    for s in iter_strings(compose):
        used |= referenced_vars(s)
    for path in provisioning_files():
        for s in iter_strings(load_yaml(path)):
            used |= referenced_vars(s)
    assert {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "PULSE_PII_KEY"} <= used
    missing = sorted(used - set(env_example))
    assert not missing, f"variables used but not in .env.example: {missing}"


def test_env_example_holds_no_secrets_and_comments_each_variable(env_example):
    for name, value in env_example.items():
        if SECRET_NAME.search(name):
            assert value == "", f".env.example: {name} must be empty, not {value!r}"
        assert not re.search(r"://[^/@\s]*:[^/@\s]+@", value), f".env.example: {name} embeds credentials"
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if re.match(VAR_NAME + "=", line):
            previous = lines[i - 1].strip() if i else ""
            # the line right above explains the variable (a `# ---` section header does not count)
            assert previous.startswith("#") and not previous.startswith("# ---"), (
                f".env.example: {line.split('=')[0]} has no comment right above it"
            )
    for required in ("CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "PULSE_PII_KEY",
                     "PULSE_KAFKA_BOOTSTRAP", "PULSE_CLICKHOUSE_URL"):
        assert required in env_example, f".env.example lacks {required}"


def assert_no_literal_secret(where: str, key, value):
    if not isinstance(key, str) or not SECRET_NAME.search(key):
        return
    if value is None or value == "":
        return
    assert isinstance(value, str) and PURE_INTERPOLATION.match(value), (
        f"{where}: {key} must be a ${{VAR}} / ${{VAR:?...}} reference without default, not {value!r}"
    )


def test_no_literal_passwords_in_compose(compose, services):
    for path, key, value in iter_items(compose):
        assert_no_literal_secret("docker-compose.yml " + "/".join(map(str, path)), key, value)
    for name, svc in services.items():
        for key, value in environment_of(svc).items():
            assert_no_literal_secret(f"{name}.environment", key, value)
    for s in iter_strings(compose):
        for m in re.finditer(r"://([^/@\s]*):([^/@\s]*)@", s):
            user, password = m.groups()
            assert PURE_INTERPOLATION.match(password), f"URL with a literal password: {s!r}"
            assert PURE_INTERPOLATION.match(user) or user == READER_USER, f"URL with a literal user: {s!r}"


def test_secret_variables_are_required_without_defaults(compose):
    for s in iter_strings(compose):
        for m in re.finditer(r"\$\{(" + VAR_NAME + r")(:?[-?+])?([^}]*)\}", s.replace("$$", "")):
            name, op = m.group(1), m.group(2)
            if SECRET_NAME.search(name):
                assert op in (":?", "?"), f"${{{name}}} must use :? so compose refuses to start without it"


def test_secrets_come_only_from_dot_env(compose, services):
    gitignore = (REPO / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in gitignore or "/.env" in gitignore, ".env must be git-ignored"
    for name in ("worker", "simulator", "migrate"):
        env_file = services[name].get("env_file")
        env_file = [env_file] if isinstance(env_file, str) else env_file
        assert env_file == [".env"], f"{name}: env_file should be .env"
    admin = environment_of(services["grafana"])["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", admin)
    ch = environment_of(services["clickhouse"])
    assert re.fullmatch(r"\$\{CLICKHOUSE_USER:\?[^}]+\}", ch["CLICKHOUSE_USER"])
    assert re.fullmatch(r"\$\{CLICKHOUSE_PASSWORD:\?[^}]+\}", ch["CLICKHOUSE_PASSWORD"])
    assert re.fullmatch(r"\$\{CLICKHOUSE_READER_PASSWORD:\?[^}]+\}", ch["CLICKHOUSE_READER_PASSWORD"])
    assert ch["CLICKHOUSE_DB"] == "pulse"


def test_compose_refuses_empty_env_and_resolves_a_filled_one(compose, services, env_example):
    strings = list(iter_strings(compose))
    # .env.example as shipped: required secrets are empty, so interpolation must fail
    with pytest.raises(LookupError):
        for s in strings:
            interpolate(s, env_example)
    filled = {k: v or f"x{k.lower()}" for k, v in env_example.items()}
    for s in strings:
        interpolate(s, filled)  # raises on a malformed ${...}
    url = urlsplit(interpolate(environment_of(services["worker"])["PULSE_CLICKHOUSE_URL"], filled))
    assert (url.scheme, url.hostname, url.port, url.path) == ("http", "clickhouse", 8123, "/pulse")
    assert (url.username, url.password) == (filled["CLICKHOUSE_USER"], filled["CLICKHOUSE_PASSWORD"])
    reader = urlsplit(interpolate(environment_of(services["worker"])["PULSE_CLICKHOUSE_QUERY_URL"], filled))
    assert (reader.scheme, reader.hostname, reader.port, reader.path) == ("http", "clickhouse", 8123, "/pulse")
    assert (reader.username, reader.password) == (READER_USER, filled["CLICKHOUSE_READER_PASSWORD"])
    assert filled["CLICKHOUSE_READER_PASSWORD"] != filled["CLICKHOUSE_PASSWORD"]
    for name in ("worker", "simulator"):
        env = environment_of(services[name])
        assert interpolate(env["PULSE_KAFKA_BOOTSTRAP"], filled) == "kafka:9092"
        # the app's default is 127.0.0.1, unreachable from prometheus and the published port
        assert env.get("PULSE_METRICS_HOST") == "0.0.0.0", f"{name}: metrics must listen on 0.0.0.0"
        assert interpolate(env["PULSE_PII_KEY"], filled) == filled["PULSE_PII_KEY"]


# --------------------------------------------------------------------------- compose: health and ordering


def test_healthchecks(services):
    for name in ("kafka", "clickhouse", "worker"):
        hc = services[name].get("healthcheck")
        assert hc and not hc.get("disable"), f"{name}: no healthcheck"
        test = hc.get("test")
        assert test and test != ["NONE"], f"{name}: empty healthcheck"
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in healthcheck_text(services["kafka"])
    assert "--bootstrap-server kafka:9092" in healthcheck_text(services["kafka"])
    assert "8123" in healthcheck_text(services["clickhouse"])
    worker_env = environment_of(services["worker"])
    assert worker_env.get("PULSE_METRICS_PORT") == "6066"
    assert ":6066/metrics" in healthcheck_text(services["worker"])
    simulator_command = services["simulator"]["command"]
    if "--metrics-port" in simulator_command:
        assert simulator_command[simulator_command.index("--metrics-port") + 1] == "6067"
    assert ":6067/metrics" in healthcheck_text(services["simulator"])


def test_dependencies(services):
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on must name a condition per service"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = (spec or {}).get("condition")
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no healthcheck"
            if condition == "service_completed_successfully":
                assert str(services[dep].get("restart", "no")) == "no", f"{dep} runs once; it must not restart"

    def condition(name, dep):
        return (services[name].get("depends_on") or {}).get(dep, {}).get("condition")

    assert condition("kafka-init", "kafka") == "service_healthy"
    assert condition("worker", "kafka-init") == "service_completed_successfully"
    assert condition("worker", "clickhouse") == "service_healthy"
    assert condition("simulator", "kafka-init") == "service_completed_successfully"
    # the schema exists before the worker stores anything and before Grafana asks for a table
    assert condition("migrate", "clickhouse") == "service_healthy"
    assert condition("worker", "migrate") == "service_completed_successfully"
    assert condition("grafana", "migrate") == "service_completed_successfully"


def test_migrate_is_a_one_shot_pulse_migrate_as_the_writing_user(services):
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["image"] == services["worker"]["image"]
    assert str(migrate.get("restart")) == "no", "a finished migration must not be restarted"
    env = environment_of(migrate)
    assert env["PULSE_CLICKHOUSE_URL"] == environment_of(services["worker"])["PULSE_CLICKHOUSE_URL"]
    assert "${CLICKHOUSE_USER:?" in env["PULSE_CLICKHOUSE_URL"]


def test_restarts_have_one_layer_and_end(services):
    """The worker's supervisor restarts crashes and exits only when stopped or refused (78): Docker restarts
    the container only on failure and a bounded number of times, so exit 78 cannot loop for ever."""
    from pulse.supervise import STOP_GRACE_S

    worker = services["worker"]
    assert worker["command"] == ["worker"], "the worker runs under its own supervisor (no --no-restart)"
    match = re.fullmatch(r"on-failure:(\d+)", str(worker.get("restart")))
    assert match and 1 <= int(match.group(1)) <= 5, f"worker restart {worker.get('restart')!r}"
    grace = re.fullmatch(r"(\d+)s", str(worker["stop_grace_period"]))
    assert grace and int(grace.group(1)) >= STOP_GRACE_S + 5, "Docker would SIGKILL a supervisor still waiting"
    assert worker.get("init") is True


def test_kafka_is_a_single_kraft_node(services):
    env = environment_of(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(env["KAFKA_NODE_ID"] + "@kafka:")
    assert env.get("CLUSTER_ID")
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env[key] == "1", f"kafka: {key} should be 1 on a single node"


def test_kafka_init_creates_the_topics(services):
    script = command_text(services["kafka-init"])
    assert "kafka-topics.sh" in script and "--bootstrap-server kafka:9092" in script
    assert "--if-not-exists" in script, "re-running kafka-init must not fail on existing topics"
    for topic in TOPICS:
        m = re.search(r"create\s+" + re.escape(topic) + r"\s+(\d+)", script) or re.search(
            r"--topic[ =]" + re.escape(topic) + r"\b.*?--partitions[ =](\d+)", script, re.S
        )
        assert m, f"kafka-init does not create {topic}"
        assert int(m.group(1)) >= 2, f"{topic} should have several partitions"
        assert int(m.group(1)) == int(environment_of(services["kafka"])["KAFKA_NUM_PARTITIONS"])
    # as in `pulse infra up`: the window topic is compacted
    assert re.search(r"pulse\.windows\b[^\n]*cleanup\.policy=compact", script)


def test_kafka_init_script_runs(services, tmp_path):
    """Run the kafka-init script (after compose interpolation) against a stub kafka-topics.sh."""
    import subprocess

    svc = services["kafka-init"]
    assert svc["entrypoint"][:2] == ["/bin/bash", "-ec"]
    (script,) = svc["command"]
    script = interpolate(script, {})
    log = tmp_path / "calls"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> {log}\n')
    stub.chmod(0o755)
    script = script.replace("/opt/kafka/bin/kafka-topics.sh", str(stub))
    subprocess.run(["bash", "-ec", script], check=True, timeout=30, capture_output=True)
    calls = log.read_text().splitlines()
    creates = {c.split("--topic ")[1].split()[0]: c for c in calls if "--create" in c}
    assert set(creates) == set(TOPICS)
    assert "--config cleanup.policy=compact" in creates["pulse.windows"]
    assert all("--replication-factor 1" in c for c in creates.values())


def test_alertmanager_renders_its_receivers_from_env_and_starts_on_them(services, tmp_path):
    """Run the alertmanager service's command (after compose interpolation) with the repository's
    deploy/alertmanager in place of the mount and a stub in place of /bin/alertmanager: the rendered
    configuration carries the .env URLs and is the file Alertmanager is started with."""
    import subprocess

    svc = services["alertmanager"]
    assert svc["entrypoint"] == ["/bin/sh", "-ec"]
    (script,) = svc["command"]
    env = {name: interpolate(value, {"PULSE_ALERT_WEBHOOK_URL": "https://chat.example/hooks/ops?token=a&b=c",
                                     "PULSE_ALERT_HEARTBEAT_URL": "https://heartbeat.example/ping/1"})
           for name, value in environment_of(svc).items()}
    stub = tmp_path / "alertmanager"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/args"\n')
    stub.chmod(0o755)
    for container_path, here in (("/etc/alertmanager/pulse", str(REPO / "deploy/alertmanager")),
                                 (" /alertmanager/alertmanager.yml", f" {tmp_path}/alertmanager.yml"),
                                 ("=/alertmanager/alertmanager.yml", f"={tmp_path}/alertmanager.yml"),
                                 ("--storage.path=/alertmanager", f"--storage.path={tmp_path}"),
                                 ("exec /bin/alertmanager", f"exec {stub}")):
        assert container_path in script, container_path
        script = script.replace(container_path, here)
    subprocess.run(["sh", "-ec", script], check=True, timeout=30, capture_output=True,
                   env={"PATH": os.environ["PATH"], **env})
    args = (tmp_path / "args").read_text().split()
    assert f"--config.file={tmp_path}/alertmanager.yml" in args
    config = load_yaml(tmp_path / "alertmanager.yml")
    urls = {r["name"]: [w["url"] for w in r.get("webhook_configs", [])] for r in config["receivers"]}
    assert urls == {"pulse-default": ["https://chat.example/hooks/ops?token=a&b=c"],
                    "pulse-critical": ["https://chat.example/hooks/ops?token=a&b=c"],
                    "pulse-info": ["https://chat.example/hooks/ops?token=a&b=c"],
                    "pulse-heartbeat": ["https://heartbeat.example/ping/1"]}
    with pytest.raises(LookupError):  # compose itself refuses to start without the webhook URL
        interpolate(environment_of(svc)["PULSE_ALERT_WEBHOOK_URL"], {})


def test_kafka_mirrors_the_local_broker_config(services):
    """The compose broker behaves like the one `pulse infra up` runs (pulse/kafka_broker/server.properties.template)."""
    template = (REPO / "pulse/kafka_broker/server.properties.template").read_text(encoding="utf-8")
    local = dict(
        line.split("=", 1) for line in template.splitlines() if "=" in line and not line.startswith("#")
    )
    env = environment_of(services["kafka"])
    compared = 0
    for key in ("message.max.bytes", "auto.create.topics.enable", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
                "offsets.topic.num.partitions", "group.initial.rebalance.delay.ms", "log.retention.hours"):
        if key in local:
            env_key = "KAFKA_" + key.upper().replace(".", "_")
            assert env.get(env_key) == local[key].strip(), f"kafka: {env_key} should be {local[key].strip()}"
            compared += 1
    assert compared >= 6, "pulse/kafka_broker/server.properties.template lost the settings compared here"


def test_grafana_service(services):
    env = environment_of(services["grafana"])
    plugins = dict(item.split("@", 1) for item in env["GF_PLUGINS_PREINSTALL_SYNC"].split(","))
    assert re.fullmatch(r"\d+\.\d+\.\d+", plugins["grafana-clickhouse-datasource"]), "plugin version not pinned"
    # Grafana reads with the read-only user only: the writing user's password is not in its environment
    assert "CLICKHOUSE_PASSWORD" not in env and "CLICKHOUSE_USER" not in env
    # every ${VAR} in the provisioning files must be in Grafana's own environment
    needed = set()
    for path in provisioning_files():
        for s in iter_strings(load_yaml(path)):
            needed |= referenced_vars(s)
    assert needed, "provisioning should read the ClickHouse credentials from the environment"
    assert needed <= set(env), f"grafana environment lacks {sorted(needed - set(env))}"


# --------------------------------------------------------------------------- Prometheus (compose)


def test_prometheus_compose_config():
    config = load_yaml(PROM_COMPOSE)
    assert config["rule_files"] == ["rules/*.yml"]
    targets = {
        job["job_name"]: [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
        for job in config["scrape_configs"]
    }
    assert len(targets) == len(config["scrape_configs"]), "duplicate job_name"
    flat = {t for ts in targets.values() for t in ts}
    assert {"worker:6066", "simulator:6067"} <= flat
    assert not any(t.startswith(("127.0.0.1", "localhost")) and t != "localhost:9090" for t in flat)
    am = [t for a in config["alerting"]["alertmanagers"] for sc in a["static_configs"] for t in sc["targets"]]
    assert am == ["alertmanager:9093"]


def test_prometheus_compose_config_matches_local_config():
    local_path = REPO / "deploy" / "prometheus" / "prometheus.yml"
    compose_cfg = load_yaml(PROM_COMPOSE)
    local = load_yaml(local_path)
    assert local.get("rule_files") == compose_cfg["rule_files"], "both configs must load the same rules"

    def pulse_jobs(cfg):
        jobs = {}
        for job in cfg["scrape_configs"]:
            ports = {t.rsplit(":", 1)[-1] for sc in job.get("static_configs", []) for t in sc.get("targets", [])}
            if ports & {"6066", "6067"}:
                jobs[job["job_name"]] = ports
        return jobs

    # alert rules select on job names, so the pulse jobs must be named alike in both files
    assert pulse_jobs(local) == pulse_jobs(compose_cfg)
    # rate windows and `for:` durations in the rules are written for the local intervals
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        assert compose_cfg["global"].get(key) == local["global"].get(key), f"global.{key} differs"


# --------------------------------------------------------------------------- Grafana provisioning


def test_datasources_provisioning():
    config = load_yaml(DATASOURCES)
    assert config.get("apiVersion") == 1
    by_uid = {ds["uid"]: ds for ds in config["datasources"]}
    ch = by_uid["pulse-clickhouse"]
    assert ch["type"] == "grafana-clickhouse-datasource"
    jd = ch["jsonData"]
    assert (jd["host"], jd["port"], jd["protocol"], jd["secure"]) == ("clickhouse", 8123, "http", False)
    assert jd["username"] == READER_USER
    assert jd["defaultDatabase"] == "pulse"
    assert ch["secureJsonData"] == {"password": "${CLICKHOUSE_READER_PASSWORD}"}
    prom = by_uid["pulse-prometheus"]
    assert prom["type"] == "prometheus"
    assert prom["url"] == "http://prometheus:9090"
    scrape_interval = load_yaml(PROM_COMPOSE)["global"]["scrape_interval"]
    assert prom.get("jsonData", {}).get("timeInterval", scrape_interval) == scrape_interval
    assert sum(bool(ds.get("isDefault")) for ds in config["datasources"]) <= 1


def test_no_literal_passwords_in_provisioning():
    for path in provisioning_files():
        config = load_yaml(path)
        rel = path.relative_to(REPO)
        for where, key, value in iter_items(config):
            if "secureJsonData" in where and not isinstance(value, (dict, list)):
                assert isinstance(value, str) and PURE_INTERPOLATION.match(value), f"{rel}: {key}={value!r}"
            if isinstance(key, str) and "password" in key.lower():
                assert "secureJsonData" in where, f"{rel}: {key} outside secureJsonData is stored in clear"
            assert_no_literal_secret(str(rel), key, value)
        for s in iter_strings(config):
            assert not re.search(r"://[^/@\s]*:[^/@\s]+@", s), f"{rel}: URL with credentials: {s!r}"


def test_dashboard_provider(services):
    config = load_yaml(DASHBOARD_PROVIDERS)
    assert config.get("apiVersion") == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "Adoption pulse"
    path = provider["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    targets = {target for kind, _, target, _ in volume_specs(services["grafana"]) if kind == "bind"}
    assert path in targets, "the provider reads a folder that is not mounted"
    for dashboard in (REPO / "deploy/grafana/dashboards").glob("*.json"):
        json.loads(dashboard.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- Dockerfile and .dockerignore


def test_dockerfile():
    instructions = dockerfile_instructions()
    args = {}
    for keyword, rest in instructions:
        if keyword == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args.setdefault(k.strip(), v.strip())
    stages = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    assert stages, "Dockerfile has no FROM"
    for i in stages:
        base = instructions[i][1].split()[0]
        base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), base)
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), f"base image {base!r} is not an exact tag"
    final = instructions[stages[-1]:]
    runs = " ".join(rest for k, rest in instructions if k == "RUN")
    assert re.search(r"pip install [^&]*\s\.(\s|$)", runs), "the package is not installed with pip install ."
    users = [rest for k, rest in final if k == "USER"]
    assert users, "the runtime stage runs as root (no USER)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), "the runtime stage runs as root"
    entrypoints = [rest for k, rest in final if k == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["pulse"]
    exposed = {p for k, rest in final if k == "EXPOSE" for p in shlex.split(rest)}
    assert {"6066", "6067"} <= exposed


def test_dockerignore():
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    patterns = {
        line.strip().rstrip("/").lstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".pulse", ".git", ".env", "**/__pycache__", ".pytest_cache", ".hypothesis", "*.jsonl.gz"):
        assert needed in patterns, f".dockerignore should exclude {needed}"
    # what `pip install .` needs must stay in the build context
    for kept in ("pyproject.toml", "README.md", "pulse", "schemas", "simulators", "streams", "sinks", "*", "**"):
        assert kept not in patterns, f".dockerignore excludes {kept}, which the image build needs"


# --------------------------------------------------------------------------- ClickHouse read-only user


def test_reader_user_is_read_only_with_its_password_from_the_environment(services):
    root = ET.parse(READER_USERS).getroot()
    (user,) = root.find("users")
    assert user.tag == READER_USER
    password = user.find("password")
    assert password.get("from_env") == "CLICKHOUSE_READER_PASSWORD" and not (password.text or "").strip()
    assert not [e.tag for e in user if e.tag.startswith("password") and e is not password], "a second password"
    profile = root.find(f"profiles/{user.find('profile').text}")
    assert profile.find("readonly").text in ("1", "2"), "the reader's profile must be read-only"
    grants = [q.text.strip() for q in user.findall("grants/query")]
    assert grants == ["GRANT SELECT ON pulse.*"]
    clickhouse = services["clickhouse"]
    mounts = {target: (REPO / source).resolve() for kind, source, target, _ in volume_specs(clickhouse)
              if kind == "bind"}
    assert mounts["/etc/clickhouse-server/users.d/pulse-reader.xml"] == READER_USERS.resolve()
    assert "CLICKHOUSE_READER_PASSWORD" in environment_of(clickhouse)
