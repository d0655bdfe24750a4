"""Secured Kafka: the settings turned into options for each client library, and the whole pipeline against a
second real broker that only speaks SASL (SCRAM-SHA-512 and PLAIN), including refused credentials."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import certifi
import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import AuthProtocol, SASLMechanism
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from pulse import infra
from pulse.kafka_security import (
    KafkaSecurity,
    KafkaSecurityError,
    KafkaUnreachable,
    aiokafka_options,
    check_kafka_access,
    faust_credentials,
    kafka_options,
)
from pulse.settings import Settings
from pulse.supervise import EXIT_CONFIG
from tests.support.services import PulseEnv, WorkerProcess, free_tcp_port
from tests.support.tables import assert_windows_equal, dead_letter_reasons, stored_windows
from tests.support.truth import expected_windows

USER = "pulse"
FAULTS = "duplicate=0.02,late=0.03,out_of_order=0.02,malformed=0.01,bad_qr=0.01"
FAIL_FAST_S = 30.0


def scram_settings(**overrides: object) -> Settings:
    values: dict[str, object] = dict(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                                     kafka_sasl_username=USER, kafka_sasl_password="s3cret-value")
    return Settings(**{**values, **overrides})


# --- the translation, without a broker ---------------------------------------------------------------

def test_plaintext_is_the_default_and_carries_no_credentials() -> None:
    settings = Settings()
    assert kafka_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert aiokafka_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


def test_scram_reaches_every_client_library_unchanged() -> None:
    settings = scram_settings()
    expected = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": USER, "sasl_plain_password": "s3cret-value"}
    assert kafka_options(settings) == expected
    assert aiokafka_options(settings) == expected
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism is SASLMechanism.SCRAM_SHA_512
    assert credentials.protocol is AuthProtocol.SASL_PLAINTEXT
    # What Faust's own aiokafka driver makes of it: the mechanism must not fall back to PLAIN.
    assert credentials_to_aiokafka_auth(credentials) == {**expected, "ssl_context": None}


def test_sasl_ssl_builds_a_tls_context_for_aiokafka_and_faust() -> None:
    settings = scram_settings(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=certifi.where())
    assert kafka_options(settings)["ssl_cafile"] == certifi.where()
    assert aiokafka_options(settings)["ssl_context"].verify_mode.name == "CERT_REQUIRED"
    credentials = faust_credentials(settings)
    assert credentials.protocol is AuthProtocol.SASL_SSL
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SASL_SSL"


def test_ssl_without_sasl_gives_faust_ssl_credentials() -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=certifi.where())
    assert kafka_options(settings) == {"security_protocol": "SSL", "ssl_cafile": certifi.where()}
    assert credentials_to_aiokafka_auth(faust_credentials(settings))["security_protocol"] == "SSL"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"kafka_sasl_password": None}, "needs PULSE_KAFKA_SASL_PASSWORD"),
    ({"kafka_sasl_mechanism": None}, "needs PULSE_KAFKA_SASL_MECHANISM"),
    ({"kafka_security_protocol": "PLAINTEXT"}, "does not use SASL"),
    ({"kafka_ssl_cafile": certifi.where()}, "does not use TLS"),
    ({"kafka_sasl_password_file": "/nonexistent"}, "not both"),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_ssl_certfile": certifi.where()}, "go together"),
])
def test_contradictory_settings_are_refused_before_connecting(overrides: dict, message: str) -> None:
    with pytest.raises(KafkaSecurityError, match=message):
        kafka_options(scram_settings(**overrides))


def test_password_file_is_read_without_its_newline_and_never_shown(tmp_path: Path) -> None:
    secret_file = tmp_path / "kafka-password"
    secret_file.write_text("from-a-file\n")
    settings = scram_settings(kafka_sasl_password=None, kafka_sasl_password_file=secret_file)
    security = KafkaSecurity.from_settings(settings)
    assert security.password == "from-a-file"
    assert "from-a-file" not in repr(security) + repr(faust_credentials(settings))
    assert "from-a-file" not in repr(settings)


def test_blank_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # An .env file copied from .env.example lists every variable, most of them blank.
    for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD", "SASL_PASSWORD_FILE",
                 "SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE"):
        monkeypatch.setenv(f"PULSE_KAFKA_{name}", "")
    assert kafka_options(Settings()) == {"security_protocol": "PLAINTEXT"}


def test_unreachable_broker_is_reported_within_the_timeout() -> None:
    settings = scram_settings(kafka_bootstrap=f"127.0.0.1:{free_tcp_port()}")
    started = time.monotonic()
    with pytest.raises(KafkaUnreachable, match="no Kafka broker answered for user pulse"):
        check_kafka_access(settings, timeout_s=5)
    assert time.monotonic() - started < 10


def test_worker_without_a_broker_exits_to_be_restarted(tmp_path: Path) -> None:
    # An absent broker may be back soon, so this must not be the "refused, do not restart" exit status.
    env = PulseEnv(state_dir=tmp_path / "state", bootstrap=f"127.0.0.1:{free_tcp_port()}",
                   extra={"PULSE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
    result = env.pulse("worker", "--no-restart", timeout=FAIL_FAST_S * 2, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "no Kafka broker answered for PLAINTEXT at 127.0.0.1:" in result.stderr


# --- a second, SASL-only broker -----------------------------------------------------------------------

@dataclass(frozen=True)
class SecuredBroker:
    bootstrap: str
    password: str

    def env(self, mechanism: str = "SCRAM-SHA-512", password: str | None = None) -> dict[str, str]:
        return {"PULSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PULSE_KAFKA_SASL_MECHANISM": mechanism,
                "PULSE_KAFKA_SASL_USERNAME": USER, "PULSE_KAFKA_SASL_PASSWORD": password or self.password}

    def settings(self, mechanism: str = "SCRAM-SHA-512") -> Settings:
        return scram_settings(kafka_bootstrap=self.bootstrap, kafka_sasl_mechanism=mechanism,
                              kafka_sasl_password=self.password)


def sasl_only_listener(port: int, password: str) -> dict[str, str]:
    """Broker properties: one SASL_PLAINTEXT listener offering SCRAM-SHA-512 and PLAIN, also between brokers."""
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    return {
        "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1000}",
        "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
            f'{scram} required username="{USER}" password="{password}";',
        # PLAIN users are listed in the JAAS line itself (user_<name>); SCRAM users live in the metadata log.
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            f'{plain} required username="{USER}" password="{password}" user_{USER}="{password}";',
    }


def free_port_pair() -> int:
    """A free port whose controller twin (port + 1000, as the broker template has it) is free as well."""
    for _ in range(50):
        port = free_tcp_port()
        if port + 1000 < 65536 and not infra._port_open("127.0.0.1", port + 1000):
            return port
    raise RuntimeError("no free port pair for the secured broker")


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    port = free_port_pair()
    password = secrets.token_hex(12)
    bootstrap = f"127.0.0.1:{port}"
    service = infra.kafka_service(
        Settings(state_dir=tmp_path_factory.mktemp("secured-kafka"), kafka_bootstrap=bootstrap),
        extra_properties=sasl_only_listener(port, password),
        format_args=["--add-scram", f"SCRAM-SHA-512=[name={USER},password={password}]"],
    )
    service.start()
    try:
        broker = SecuredBroker(bootstrap, password)
        infra.create_topics(broker.settings())  # the admin calls of `pulse infra up`, authenticated
        infra.wait_for_group_coordinator(broker.settings())
        yield broker
    finally:
        service.stop()  # SIGTERM, then SIGKILL after infra.STOP_TIMEOUT_S


def test_scram_pipeline_stores_the_exact_windows(secured_broker: SecuredBroker, tmp_path: Path) -> None:
    env = PulseEnv(state_dir=tmp_path / "state", bootstrap=secured_broker.bootstrap, extra=secured_broker.env(),
                   security=kafka_options(secured_broker.settings()))
    env.start_from_now()
    flags = ["--seed", "21", "--events", "3000", "--rate", "3000", "--speed", "30", "--faults", FAULTS]
    recorded = tmp_path / "events.jsonl"
    env.pulse("simulate", *flags, "--out", str(recorded))
    produced = env.pulse("simulate", *flags, "--metrics-port", "0")
    assert json.loads(produced.stderr.splitlines()[-1])["total"] == len(recorded.read_bytes().splitlines())

    # The worker reads its password from a file, the simulator from the environment: both paths are used.
    password_file = tmp_path / "kafka-password"
    password_file.write_text(secured_broker.password + "\n")
    worker_extra = {name: value for name, value in env.extra.items() if name != "PULSE_KAFKA_SASL_PASSWORD"}
    worker_extra["PULSE_KAFKA_SASL_PASSWORD_FILE"] = str(password_file)
    worker = WorkerProcess(dataclasses.replace(env, extra=worker_extra))
    try:
        env.wait_until_stored(timeout_s=180)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    truth = expected_windows(recorded)
    assert_windows_equal(truth, stored_windows(env.chdb_url))
    assert dead_letter_reasons(env.chdb_url) == truth.dead_letters
    assert secured_broker.password not in worker.log() + produced.stdout + produced.stderr


@pytest.mark.parametrize("command", [["simulate", "--events", "100", "--metrics-port", "0"], ["worker"]],
                         ids=["simulate", "worker"])
def test_wrong_password_fails_fast_with_a_clear_message(secured_broker: SecuredBroker, tmp_path: Path,
                                                        command: list[str]) -> None:
    wrong = secrets.token_hex(12)
    env = PulseEnv(state_dir=tmp_path / "state", bootstrap=secured_broker.bootstrap,
                   extra=secured_broker.env(password=wrong))
    started = time.monotonic()
    try:
        result = env.pulse(*command, timeout=FAIL_FAST_S * 2, check=False)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"`pulse {command[0]}` kept running with a refused password") from error
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f} s"
    assert f"Kafka authentication failed for user {USER} (SCRAM-SHA-512 over SASL_PLAINTEXT) at " \
           f"{secured_broker.bootstrap}" in output, output[-2000:]
    assert wrong not in output
    if command[0] == "worker":
        assert result.returncode == EXIT_CONFIG, "the supervisor must give up at once, not restart"


def test_plain_mechanism_round_trip(secured_broker: SecuredBroker) -> None:
    settings = secured_broker.settings(mechanism="PLAIN")
    options = kafka_options(settings)
    check_kafka_access(settings)
    topic = f"pulse.test.plain-{secrets.token_hex(4)}"
    admin = KafkaAdminClient(bootstrap_servers=secured_broker.bootstrap, **options)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=secured_broker.bootstrap, acks="all", **options)
    try:
        for index in range(3):
            producer.send(topic, value=f"plain-{index}".encode())
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(topic, bootstrap_servers=secured_broker.bootstrap, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000, **options)
    try:
        assert [record.value for record in consumer] == [b"plain-0", b"plain-1", b"plain-2"]
    finally:
        consumer.close()
    assert asyncio.run(_read_with_aiokafka(secured_broker.bootstrap, topic, aiokafka_options(settings))) == 3


async def _read_with_aiokafka(bootstrap: str, topic: str, options: dict) -> int:
    """The bench's raw-consumer path (aiokafka), with the same settings."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **options)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return sum(len(records) for records in batches.values())
    finally:
        await consumer.stop()
