"""Local real services for `pulse infra up|down|status`: Apache Kafka (KRaft) and, where installed,
Prometheus and Alertmanager. Each runs as a detached process with its pid, config and log under the
state directory, so every command is idempotent and `down` finds what `up` started."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pulse.alertmanager_config import AlertmanagerConfigError, render_from_settings
from pulse.errors import PulseError
from pulse.kafka_security import kafka_options
from pulse.settings import Settings, project_root

KAFKA_VERSION = "3.9.1"
# The broker's pom, properties template and log4j config ship inside the package (package data), so an
# installed `pulse infra` finds them as a checkout does.
KAFKA_FILES = Path(__file__).resolve().parent / "kafka_broker"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


class InfraError(PulseError, RuntimeError):
    pass


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Service:
    name: str
    host: str
    port: int
    home: Path
    command: Callable[[], list[str]]
    prepare: Callable[[], None] = lambda: None

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None and _port_open(self.host, self.port)

    def start(self) -> str:
        if self.running():
            return f"{self.name}: already up (pid {self.pid()}, {self.host}:{self.port})"
        if self.pid() is None and _port_open(self.host, self.port):
            raise InfraError(f"{self.name}: port {self.host}:{self.port} is taken by another process")
        self.home.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _port_open(self.host, self.port):
            if process.poll() is not None:
                raise InfraError(f"{self.name} exited with {process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise InfraError(f"{self.name} did not open {self.host}:{self.port} in {START_TIMEOUT_S:.0f} s")
            time.sleep(0.3)
        return f"{self.name}: up (pid {process.pid}, {self.host}:{self.port}, log {self.log_file})"

    def stop(self) -> str:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return f"{self.name}: already down"
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return f"{self.name}: down"

    def status(self) -> str:
        pid = self.pid()
        state = "up" if self.running() else ("starting or unhealthy" if pid else "down")
        return f"{self.name:<13} {state:<22} {self.host}:{self.port}" + (f"  pid {pid}" if pid else "")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def kafka_reachable(settings: Settings) -> bool:
    """Some broker answers at the configured address (ours or anyone's)."""
    return _port_open(*_split_host_port(settings.kafka_bootstrap))


def kafka_libs_dir() -> Path:
    """Broker jars, shared by every state directory on this machine: fetched once."""
    override = os.environ.get("PULSE_KAFKA_LIBS")
    if override:
        return Path(override)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adoption-pulse" / f"kafka-{KAFKA_VERSION}"


def ensure_kafka_jars() -> Path:
    libs = kafka_libs_dir()
    if (libs / ".complete").is_file():
        return libs
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise InfraError(f"`{tool}` is not on PATH: Kafka needs Java 17+ and Maven to fetch its jars "
                             "(Debian: apt-get install openjdk-17-jre-headless maven)")
    libs.mkdir(parents=True, exist_ok=True)
    pom = KAFKA_FILES / "pom.xml"
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={libs}"],
        capture_output=True, text=True, timeout=900,
    )
    if result.returncode != 0:
        raise InfraError(f"fetching Kafka jars with Maven failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    (libs / ".complete").write_text(KAFKA_VERSION)
    return libs


def kafka_service(settings: Settings, *, extra_properties: Mapping[str, str] | None = None,
                  format_args: Sequence[str] = ()) -> Service:
    """The broker for `settings`. `extra_properties` are appended to the template, so they override its
    lines (a later key wins in a Java properties file): a secured listener, for instance. `format_args`
    go to the storage format run, the one moment KRaft accepts SCRAM users without a running broker."""
    host, port = _split_host_port(settings.kafka_bootstrap)
    home = settings.state_dir / "kafka"
    data = home / "data"
    config = home / "server.properties"

    def java(*args: str) -> list[str]:
        return ["java", "-Xms256m", "-Xmx512m", "-XX:+UseSerialGC",
                f"-Dlog4j.configuration=file:{KAFKA_FILES / 'log4j.properties'}",
                "-cp", f"{ensure_kafka_jars()}/*", *args]

    def prepare() -> None:
        template = (KAFKA_FILES / "server.properties.template").read_text()
        properties = template.format(port=port, controller_port=port + 1000, log_dir=data,
                                     partitions=settings.topic_partitions)
        overrides = "".join(f"{key}={value}\n" for key, value in (extra_properties or {}).items())
        config.write_text(properties + overrides)
        if not (data / "meta.properties").is_file():
            cluster_id = subprocess.run(java("kafka.tools.StorageTool", "random-uuid"), capture_output=True,
                                        text=True, check=True, timeout=120).stdout.strip().splitlines()[-1]
            formatted = subprocess.run(java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c",
                                            str(config), *format_args), capture_output=True, text=True, timeout=120)
            if formatted.returncode != 0:
                # Not CalledProcessError: its message repeats the command line, which may carry SCRAM passwords.
                raise InfraError("formatting Kafka storage failed:\n"
                                 f"{formatted.stdout[-2000:]}{formatted.stderr[-2000:]}")

    return Service("kafka", host, port, home, lambda: java("kafka.Kafka", str(config)), prepare)


def prometheus_services(settings: Settings) -> list[Service]:
    """Prometheus and Alertmanager from the Debian packages, when installed."""
    deploy = project_root() / "deploy"
    if not deploy.is_dir():
        return []  # an installed package run outside a checkout: their configs live in the repository's deploy/
    found = []
    prometheus = shutil.which("prometheus")
    if prometheus:
        prometheus_home = settings.state_dir / "prometheus"
        found.append(Service("prometheus", "127.0.0.1", 9090, prometheus_home, lambda: [
            prometheus, f"--config.file={deploy / 'prometheus' / 'prometheus.yml'}",
            f"--storage.tsdb.path={prometheus_home / 'data'}", "--web.listen-address=127.0.0.1:9090",
            "--storage.tsdb.retention.time=2d",
        ]))
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if alertmanager:
        alertmanager_home = settings.state_dir / "alertmanager"
        rendered = alertmanager_home / "alertmanager.yml"  # receivers from PULSE_ALERT_* (render.sh)

        def render() -> None:
            try:
                render_from_settings(settings, rendered)
            except AlertmanagerConfigError as error:
                raise InfraError(str(error)) from None

        found.append(Service("alertmanager", "127.0.0.1", 9093, alertmanager_home, lambda: [
            alertmanager, f"--config.file={rendered}",
            f"--storage.path={alertmanager_home / 'data'}", "--web.listen-address=127.0.0.1:9093",
            "--cluster.listen-address=",
        ], render))
    return found


def create_topics(settings: Settings, replication_factor: int = 1) -> list[str]:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30000,
                             **kafka_options(settings))
    try:
        existing = set(admin.list_topics())
        missing = [t for t in settings.topics.all if t not in existing]
        new = [NewTopic(t, settings.topic_partitions, replication_factor,
                        topic_configs={"cleanup.policy": "compact"} if t == settings.topics.windows else {})
               for t in missing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        return missing
    finally:
        admin.close()


def delete_run_topics(settings: Settings, group: str) -> None:
    """Delete the topics under settings.topic_prefix and the consumer group of a throw-away run (`pulse bench`,
    `pulse soak`). Refuses the contract's topic names: live data is never deleted here."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    if not settings.topic_prefix:
        raise InfraError("refusing to delete the live topics: no topic prefix is set")
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30000,
                             **kafka_options(settings))
    try:
        present = [topic for topic in settings.topics.all if topic in set(admin.list_topics())]
        if present:
            admin.delete_topics(present, timeout_ms=30000)
        try:
            admin.delete_groups([group])  # per-group errors come back in the result: none of them matters here
        except KafkaError:
            pass  # never committed (a run that failed early), or already gone
    finally:
        admin.close()


def wait_for_group_coordinator(settings: Settings, timeout_s: float = START_TIMEOUT_S) -> None:
    """A fresh broker answers before its offsets topic exists; consumers need that topic's coordinator."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **kafka_options(settings))
    try:
        while True:
            try:
                admin.list_group_offsets({"pulse-readiness-probe": None})
                return
            except KafkaError as error:
                if time.monotonic() > deadline:
                    raise InfraError(f"Kafka's group coordinator is not available: {error}") from None
                time.sleep(0.5)
    finally:
        admin.close()


def services(settings: Settings, with_monitoring: bool = True) -> list[Service]:
    return [kafka_service(settings), *(prometheus_services(settings) if with_monitoring else [])]


def up(settings: Settings, with_monitoring: bool = True) -> list[str]:
    lines = [service.start() for service in services(settings, with_monitoring)]
    created = create_topics(settings)
    wait_for_group_coordinator(settings)
    lines.append(f"topics: created {', '.join(created)}" if created else "topics: all present")
    return lines


def down(settings: Settings, purge: bool = False) -> list[str]:
    lines = [service.stop() for service in reversed(services(settings))]
    if purge:
        for name in ("kafka", "prometheus", "alertmanager", "clickhouse", "clickhouse.lock"):
            target = settings.state_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        lines.append(f"purged Kafka logs, metrics and the ClickHouse store under {settings.state_dir}")
    return lines


def status(settings: Settings) -> list[str]:
    return [service.status() for service in services(settings)]
