"""Secured Kafka: the settings turned into options for each client library, and the whole pipeline against a
second real broker that speaks only SASL (SCRAM-SHA-512 and PLAIN, with and without TLS) and TLS with client
certificates, including refused credentials, missing client certificates and untrusted broker certificates."""
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
    KafkaLoginRefused,
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
from tests.support.tls import TestPki, make_test_pki
from tests.support.truth import expected_windows

USER = "pulse"
FAULTS = "duplicate=0.02,late=0.03,out_of_order=0.02,malformed=0.01,bad_qr=0.01"
FAIL_FAST_S = 30.0
REFUSAL_TIMEOUT_S = 120.0  # far above a handshake's time, so that "did not wait for it" has a wide margin


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
    # Behaviour: it gives up at its deadline instead of retrying on. The margin is for a loaded machine only.
    assert time.monotonic() - started < 5 + 25


def test_worker_without_a_broker_exits_to_be_restarted(tmp_path: Path) -> None:
    # An absent broker may be back soon, so this must not be the "refused, do not restart" exit status.
    env = PulseEnv(state_dir=tmp_path / "state", bootstrap=f"127.0.0.1:{free_tcp_port()}",
                   extra={"PULSE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
    result = env.pulse("worker", "--no-restart", timeout=FAIL_FAST_S * 2, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "no Kafka broker answered for PLAINTEXT at 127.0.0.1:" in result.stderr


# --- a second broker that speaks only SASL and TLS ---------------------------------------------------

SASL_LISTENERS = ("SASL_PLAINTEXT", "SASL_SSL")
SECURED_LISTENERS = (*SASL_LISTENERS, "SSL")  # the SSL listener requires a client certificate


@dataclass(frozen=True)
class SecuredBroker:
    ports: dict[str, int]  # listener (named after its protocol) -> port
    password: str
    pki: TestPki

    @property
    def bootstrap(self) -> str:
        return self.address("SASL_PLAINTEXT")

    def address(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def env(self, mechanism: str = "SCRAM-SHA-512", password: str | None = None,
            protocol: str = "SASL_PLAINTEXT") -> dict[str, str]:
        env = {"PULSE_KAFKA_SECURITY_PROTOCOL": protocol, "PULSE_KAFKA_SASL_MECHANISM": mechanism,
               "PULSE_KAFKA_SASL_USERNAME": USER, "PULSE_KAFKA_SASL_PASSWORD": password or self.password}
        if protocol == "SASL_SSL":
            env["PULSE_KAFKA_SSL_CAFILE"] = str(self.pki.ca_file)
        return env

    def mtls_env(self, *, ca_file: Path | None = None, with_client_cert: bool = True) -> dict[str, str]:
        """For the SSL listener: our CA (or `ca_file`) and, unless told otherwise, the client certificate."""
        env = {"PULSE_KAFKA_SECURITY_PROTOCOL": "SSL", "PULSE_KAFKA_SSL_CAFILE": str(ca_file or self.pki.ca_file)}
        if with_client_cert:
            env.update(PULSE_KAFKA_SSL_CERTFILE=str(self.pki.client_cert),
                       PULSE_KAFKA_SSL_KEYFILE=str(self.pki.client_key))
        return env

    def settings(self, mechanism: str = "SCRAM-SHA-512", protocol: str = "SASL_PLAINTEXT") -> Settings:
        return settings_from_env(self.address(protocol), self.env(mechanism, protocol=protocol))

    def mtls_settings(self, **choices: object) -> Settings:
        return settings_from_env(self.address("SSL"), self.mtls_env(**choices))


def settings_from_env(bootstrap: str, env: dict[str, str]) -> Settings:
    """The settings a `pulse` process started with these variables reads, for the same checks in this process."""
    return Settings(kafka_bootstrap=bootstrap, **{name.removeprefix("PULSE_").lower(): value
                                                  for name, value in env.items()})


def secured_listeners(ports: dict[str, int], password: str, pki: TestPki) -> dict[str, str]:
    """Broker properties: no plaintext listener for clients. Both SASL listeners offer SCRAM-SHA-512 and PLAIN;
    the SSL listener refuses clients without a certificate signed by the test CA."""
    endpoints = ",".join(f"{name}://127.0.0.1:{ports[name]}" for name in SECURED_LISTENERS)
    properties = {
        "listeners": f"{endpoints},CONTROLLER://127.0.0.1:{ports['SASL_PLAINTEXT'] + 1000}",
        "advertised.listeners": endpoints,
        "listener.security.protocol.map": ",".join(f"{name}:{name}" for name in SECURED_LISTENERS)
                                          + ",CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        # PEM files straight from openssl, so the test needs no keytool and no key store password.
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki.broker_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca_file),
        "listener.name.ssl.ssl.client.auth": "required",
    }
    for listener in SASL_LISTENERS:
        properties.update(sasl_login_modules(listener.lower(), password))
    return properties


def sasl_login_modules(listener: str, password: str) -> dict[str, str]:
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    return {
        f"listener.name.{listener}.scram-sha-512.sasl.jaas.config":
            f'{scram} required username="{USER}" password="{password}";',
        # PLAIN users are listed in the JAAS line itself (user_<name>); SCRAM users live in the metadata log.
        f"listener.name.{listener}.plain.sasl.jaas.config":
            f'{plain} required username="{USER}" password="{password}" user_{USER}="{password}";',
    }


def free_listener_ports() -> dict[str, int]:
    """Free ports for the listeners; the first one's controller twin (port + 1000, as the broker template has
    it) must be free as well."""
    for _ in range(50):
        port = free_tcp_port()
        if port + 1000 < 65536 and not infra._port_open("127.0.0.1", port + 1000):
            others = {free_tcp_port() for _ in range(8)} - {port, port + 1000}
            if len(others) >= len(SECURED_LISTENERS) - 1:
                return dict(zip(SECURED_LISTENERS, [port, *sorted(others)]))
    raise RuntimeError("no free ports for the secured broker")


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    ports = free_listener_ports()
    password = secrets.token_hex(12)
    pki = make_test_pki(tmp_path_factory.mktemp("secured-kafka-pki"))
    broker_settings = Settings(state_dir=tmp_path_factory.mktemp("secured-kafka"),
                               kafka_bootstrap=f"127.0.0.1:{ports['SASL_PLAINTEXT']}")
    service = infra.kafka_service(
        broker_settings,
        extra_properties=secured_listeners(ports, password, pki),
        format_args=["--add-scram", f"SCRAM-SHA-512=[name={USER},password={password}]"],
    )
    service.start()
    try:
        broker = SecuredBroker(ports, password, pki)
        infra.create_topics(broker.settings())  # the admin calls of `pulse infra up`, authenticated
        infra.wait_for_group_coordinator(broker.settings())
        yield broker
    finally:
        service.stop()  # SIGTERM, then SIGKILL after infra.STOP_TIMEOUT_S


@pytest.mark.parametrize("protocol", SASL_LISTENERS)
def test_scram_pipeline_stores_the_exact_windows(secured_broker: SecuredBroker, tmp_path: Path,
                                                 protocol: str) -> None:
    env = PulseEnv(state_dir=tmp_path / "state", bootstrap=secured_broker.address(protocol),
                   extra=secured_broker.env(protocol=protocol),
                   security=kafka_options(secured_broker.settings(protocol=protocol)))
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


def refused_client(broker: SecuredBroker, refusal: str, wrong_password: str) -> tuple[str, dict[str, str], str]:
    """Bootstrap address, environment and the start of the expected error for a client the broker turns away."""
    if refusal == "wrong-password":
        return (broker.bootstrap, broker.env(password=wrong_password), f"Kafka authentication failed for user "
                f"{USER} (SCRAM-SHA-512 over SASL_PLAINTEXT) at {broker.bootstrap}")
    return (broker.address("SSL"), broker.mtls_env(with_client_cert=False),
            f"TLS handshake with Kafka failed for SSL at {broker.address('SSL')}")


@pytest.mark.parametrize("refusal", ["wrong-password", "no-client-certificate"])
@pytest.mark.parametrize("command", [["simulate", "--events", "100", "--metrics-port", "0"], ["worker"]],
                         ids=["simulate", "worker"])
def test_refused_client_fails_fast_with_a_clear_message(secured_broker: SecuredBroker, tmp_path: Path,
                                                        command: list[str], refusal: str) -> None:
    wrong = secrets.token_hex(12)
    bootstrap, extra, expected = refused_client(secured_broker, refusal, wrong)
    env = PulseEnv(state_dir=tmp_path / "state", bootstrap=bootstrap, extra=extra)
    started = time.monotonic()
    try:
        result = env.pulse(*command, timeout=FAIL_FAST_S * 2, check=False)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"`pulse {command[0]}` kept running although the broker refused it") from error
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f} s"
    assert expected in output, output[-2000:]
    assert wrong not in output and secured_broker.password not in output
    if command[0] == "worker":
        assert result.returncode == EXIT_CONFIG, "the supervisor must give up at once, not restart"


TLS_REFUSALS = {
    # The broker asks for a client certificate and gets none: it answers the handshake with an alert.
    "no-client-certificate": (lambda broker: broker.mtls_settings(with_client_cert=False),
                              "refused this client's TLS certificate, or its absence"),
    # The client trusts only a CA that never signed the broker's certificate: our side stops the handshake.
    "foreign-ca": (lambda broker: broker.mtls_settings(ca_file=broker.pki.foreign_ca_file),
                   "certificate verify failed"),
    "foreign-ca-sasl-ssl": (lambda broker: broker.settings(protocol="SASL_SSL").model_copy(
        update={"kafka_ssl_cafile": broker.pki.foreign_ca_file}), "certificate verify failed"),
}


@pytest.mark.parametrize("refusal", TLS_REFUSALS)
def test_tls_refusal_is_named_as_such_at_once(secured_broker: SecuredBroker, refusal: str) -> None:
    make_settings, reason = TLS_REFUSALS[refusal]
    settings = make_settings(secured_broker)
    started = time.monotonic()
    with pytest.raises(KafkaLoginRefused) as refused:
        check_kafka_access(settings, timeout_s=REFUSAL_TIMEOUT_S)
    # Waiting for the timeout would take all of it; a handshake, even on a loaded machine, a few seconds.
    assert time.monotonic() - started < REFUSAL_TIMEOUT_S / 2, "a TLS refusal must not wait for a timeout"
    message = str(refused.value)
    assert "TLS handshake with Kafka failed for " in message
    assert f"at {settings.kafka_bootstrap}: " in message, message
    assert reason in message, message
    assert secured_broker.password not in message


ROUND_TRIPS = {
    "plain-over-sasl-plaintext": lambda broker: broker.settings(mechanism="PLAIN"),
    "scram-over-sasl-ssl": lambda broker: broker.settings(protocol="SASL_SSL"),
    "ssl-with-client-certificate": lambda broker: broker.mtls_settings(),
}


@pytest.mark.parametrize("client", ROUND_TRIPS)
def test_every_client_library_round_trips(secured_broker: SecuredBroker, client: str) -> None:
    settings = ROUND_TRIPS[client](secured_broker)
    bootstrap, options = settings.kafka_bootstrap, kafka_options(settings)
    check_kafka_access(settings)
    topic = f"pulse.test.{client}-{secrets.token_hex(4)}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **options)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **options)
    try:
        for index in range(3):
            producer.send(topic, value=f"{client}-{index}".encode())
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000, **options)
    try:
        assert [record.value for record in consumer] == [f"{client}-{index}".encode() for index in range(3)]
    finally:
        consumer.close()
    assert asyncio.run(_read_with_aiokafka(bootstrap, topic, aiokafka_options(settings))) == 3
    # What Faust's own driver makes of the worker's credentials must connect as well.
    faust_options = credentials_to_aiokafka_auth(faust_credentials(settings))
    assert asyncio.run(_read_with_aiokafka(bootstrap, topic, faust_options)) == 3


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
