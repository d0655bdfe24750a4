"""Kafka security settings turned into client options: the one place that knows how kafka-python,
aiokafka and Faust each spell TLS and SASL, and how to tell a refused login from an absent broker.

Every Kafka client in the project is built with options from here, so a secured broker works the same
for simulators, worker, replay, archive, bench, watch and the infra admin calls.
"""
from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from pulse.errors import PulseError
from pulse.settings import Settings, read_secret_file

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
PREFLIGHT_TIMEOUT_S = 20.0


class KafkaSecurityError(PulseError, ValueError):
    """The security settings contradict each other or miss a value; raised before any connection."""


class KafkaAccessError(PulseError, RuntimeError):
    """The broker could not be used with these settings."""


class KafkaLoginRefused(KafkaAccessError):
    """A broker answered and refused the credentials or the TLS handshake: retrying cannot help."""


class KafkaUnreachable(KafkaAccessError):
    """No bootstrap broker answered in time: it may be down for a moment, so a retry later can help."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # repr=False: never in a traceback or log line
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        security = cls(
            protocol=settings.kafka_security_protocol,
            mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=_sasl_password(settings),
            cafile=_path_text(settings.kafka_ssl_cafile),
            certfile=_path_text(settings.kafka_ssl_certfile),
            keyfile=_path_text(settings.kafka_ssl_keyfile),
        )
        security.check_consistent()
        return security

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in SASL_PROTOCOLS

    @property
    def uses_tls(self) -> bool:
        return self.protocol in TLS_PROTOCOLS

    def check_consistent(self) -> None:
        # Values that the protocol would silently ignore are errors: a user who set a CA file or a
        # password believes the connection is protected, and it would not be.
        if self.uses_sasl:
            missing = [name for name, value in (("PULSE_KAFKA_SASL_MECHANISM", self.mechanism),
                                                ("PULSE_KAFKA_SASL_USERNAME", self.username),
                                                ("PULSE_KAFKA_SASL_PASSWORD or PULSE_KAFKA_SASL_PASSWORD_FILE",
                                                 self.password)) if not value]
            if missing:
                raise KafkaSecurityError(f"PULSE_KAFKA_SECURITY_PROTOCOL={self.protocol} needs {', '.join(missing)}")
        elif self.mechanism or self.username or self.password:
            raise KafkaSecurityError(f"SASL settings are set but PULSE_KAFKA_SECURITY_PROTOCOL={self.protocol} "
                                     "does not use SASL (use SASL_PLAINTEXT or SASL_SSL)")
        if not self.uses_tls and (self.cafile or self.certfile or self.keyfile):
            raise KafkaSecurityError(f"TLS files are set but PULSE_KAFKA_SECURITY_PROTOCOL={self.protocol} "
                                     "does not use TLS (use SSL or SASL_SSL)")
        if bool(self.certfile) != bool(self.keyfile):
            raise KafkaSecurityError("PULSE_KAFKA_SSL_CERTFILE and PULSE_KAFKA_SSL_KEYFILE go together")

    def _common_options(self) -> dict[str, Any]:
        """Protocol and SASL options, spelt the same by kafka-python and aiokafka."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            options.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        return options

    def kafka_python_options(self) -> dict[str, Any]:
        """Keyword options for KafkaProducer, KafkaConsumer and KafkaAdminClient."""
        options = self._common_options()
        if self.uses_tls:
            options.update({name: value for name, value in (("ssl_cafile", self.cafile),
                                                            ("ssl_certfile", self.certfile),
                                                            ("ssl_keyfile", self.keyfile)) if value})
        return options

    def aiokafka_options(self) -> dict[str, Any]:
        """Keyword options for aiokafka clients, which take an SSLContext instead of file names."""
        options = self._common_options()
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        return options

    def faust_credentials(self) -> Any:
        """`broker_credentials` for faust.App, or None for PLAINTEXT. Faust's aiokafka driver passes the
        SASL mechanism through unchanged, so SCRAM works the same as PLAIN."""
        import faust

        if self.uses_sasl:
            # With an SSL context Faust switches the protocol to SASL_SSL; without one it stays SASL_PLAINTEXT.
            return faust.SASLCredentials(username=self.username, password=self.password, mechanism=self.mechanism,
                                         ssl_context=self.ssl_context() if self.uses_tls else None)
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def ssl_context(self) -> ssl.SSLContext:
        from aiokafka.helpers import create_ssl_context

        return create_ssl_context(cafile=self.cafile, certfile=self.certfile, keyfile=self.keyfile)

    def describe(self, bootstrap: str) -> str:
        """Who connects where, for messages: the user name and mechanism, never the password."""
        if self.uses_sasl:
            return f"user {self.username} ({self.mechanism} over {self.protocol}) at {bootstrap}"
        return f"{self.protocol} at {bootstrap}"


def _sasl_password(settings: Settings) -> str | None:
    if settings.kafka_sasl_password is not None and settings.kafka_sasl_password_file is not None:
        raise KafkaSecurityError("set PULSE_KAFKA_SASL_PASSWORD or PULSE_KAFKA_SASL_PASSWORD_FILE, not both")
    if settings.kafka_sasl_password_file is not None:
        try:
            return read_secret_file(settings.kafka_sasl_password_file)
        except OSError as error:
            raise KafkaSecurityError(f"PULSE_KAFKA_SASL_PASSWORD_FILE cannot be read: {error.strerror}") from None
    if settings.kafka_sasl_password is not None:
        return settings.kafka_sasl_password.get_secret_value()
    return None


def _path_text(path: object) -> str | None:
    return None if path is None else str(path)


def check_kafka_access(settings: Settings, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Open one authenticated connection to a bootstrap broker and close it; raise KafkaAccessError with
    a clear reason if none can be had. On a refused login kafka-python waits out its 30 s bootstrap
    timeout and aiokafka (under Faust) gives up at once, but both then say only "unable to bootstrap";
    the error that names the cause stays in their logs. Commands call this before their first client."""
    security = KafkaSecurity.from_settings(settings)
    asyncio.run(_probe_bootstrap(settings.kafka_bootstrap, security, time.monotonic() + timeout_s))


async def _probe_bootstrap(bootstrap: str, security: KafkaSecurity, deadline: float) -> None:
    from aiokafka import errors
    from aiokafka.conn import create_conn

    refused_login = (errors.SaslAuthenticationFailed, errors.AuthenticationFailedError,
                     errors.IllegalSaslStateError, errors.UnsupportedSaslMechanismError,
                     errors.AuthenticationMethodNotSupported)
    unreachable: list[str] = []
    for address in [part.strip() for part in bootstrap.split(",") if part.strip()]:
        host, _, port = address.rpartition(":")
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            break
        try:
            connection = await asyncio.wait_for(
                create_conn(host, int(port), request_timeout_ms=int(left_s * 1000), **security.aiokafka_options()),
                timeout=left_s)
        except refused_login as error:
            raise KafkaLoginRefused(f"Kafka authentication failed for {security.describe(address)}: "
                                   f"{_without(security.password, error)}") from None
        except (TimeoutError, OSError, errors.KafkaError) as error:
            tls_error = _tls_cause(error)
            if tls_error is not None:
                raise KafkaLoginRefused(f"TLS handshake with Kafka failed for {security.describe(address)}: "
                                       f"{_without(security.password, tls_error)}{_tls_hint(tls_error)}") from None
            unreachable.append(f"{address}: {_without(security.password, error) or type(error).__name__}")
            continue
        connection.close()
        return
    raise KafkaUnreachable(f"no Kafka broker answered for {security.describe(bootstrap)} "
                           f"({'; '.join(unreachable) or 'timed out'})")


def _tls_cause(error: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind `error`, if any. Our own verification of the broker fails inside the handshake
    and arrives as the SSLError itself; a broker that rejects our certificate (or its absence) does so with
    an alert read after the handshake, which aiokafka reports as a closed connection caused by that SSLError."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__
    return None


def _tls_hint(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return (" (the broker's certificate is not trusted here: check PULSE_KAFKA_SSL_CAFILE, and that the "
                "certificate names the host in PULSE_KAFKA_BOOTSTRAP)")
    reason = (error.reason or "").upper()  # e.g. SSLV3_ALERT_BAD_CERTIFICATE, TLSV1_ALERT_UNKNOWN_CA
    if "ALERT" in reason and ("CERTIFICATE" in reason or "UNKNOWN_CA" in reason):
        return (" (the broker refused this client's TLS certificate, or its absence: check "
                "PULSE_KAFKA_SSL_CERTFILE and PULSE_KAFKA_SSL_KEYFILE)")
    return ""


def _without(secret: str | None, error: BaseException) -> str:
    """The error's text with the password masked, should a library ever echo it back."""
    text = str(error)
    return text.replace(secret, "***") if secret else text


def kafka_options(settings: Settings) -> dict[str, Any]:
    """kafka-python keyword options for the configured broker (security only; the bootstrap is separate)."""
    return KafkaSecurity.from_settings(settings).kafka_python_options()


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    return KafkaSecurity.from_settings(settings).aiokafka_options()


def faust_credentials(settings: Settings) -> Any:
    return KafkaSecurity.from_settings(settings).faust_credentials()
