"""All settings in one place: environment variables with the prefix PULSE_, overridable by CLI flags."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pulse.errors import PulseError

TOPIC_PAYMENTS = "pulse.payments.vietqr"
TOPIC_DOSSIERS = "pulse.dossiers.events"
TOPIC_IDENTITY = "pulse.identity.activations"
TOPIC_DEADLETTER = "pulse.deadletter"
TOPIC_WINDOWS = "pulse.windows"
INPUT_TOPICS = (TOPIC_PAYMENTS, TOPIC_DOSSIERS, TOPIC_IDENTITY)
STREAM_TOPICS = {"payments": TOPIC_PAYMENTS, "dossiers": TOPIC_DOSSIERS, "identity": TOPIC_IDENTITY}
ALL_TOPICS = (*INPUT_TOPICS, TOPIC_DEADLETTER, TOPIC_WINDOWS)
# The constants above are the contract's names (PULSE_TOPIC_PREFIX empty). Code that reads or writes topics
# takes its names from Settings.topics, so that `pulse bench` and `pulse soak` run on topics of their own.
_TOPIC_PREFIX = re.compile(r"[A-Za-z0-9._-]{0,100}")


@dataclass(frozen=True)
class Topics:
    """The pipeline's topic names under a prefix: "" gives the contract's names (TOPIC_PAYMENTS, ...)."""

    prefix: str = ""

    def __post_init__(self) -> None:
        if not _TOPIC_PREFIX.fullmatch(self.prefix):
            raise ValueError(f"topic prefix {self.prefix!r}: use at most 100 of the characters A-Z a-z 0-9 . _ -")

    @property
    def streams(self) -> dict[str, str]:
        """stream -> input topic (STREAM_TOPICS under the prefix)."""
        return {stream: self.prefix + topic for stream, topic in STREAM_TOPICS.items()}

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.streams.values())

    @property
    def deadletter(self) -> str:
        return self.prefix + TOPIC_DEADLETTER

    @property
    def windows(self) -> str:
        return self.prefix + TOPIC_WINDOWS

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.inputs, self.deadletter, self.windows)

# Used only by `pulse demo` and tests when PULSE_PII_KEY is unset; never for real data.
DEMO_PII_KEY = "demo-only-not-a-secret"


def project_root() -> Path:
    """The checkout when running from one (editable install), else the working directory."""
    package_parent = Path(__file__).resolve().parent.parent
    if (package_parent / "deploy").is_dir() and (package_parent / "pyproject.toml").is_file():
        return package_parent
    return Path.cwd()


def default_state_dir() -> Path:
    return project_root() / ".pulse"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PULSE_", extra="ignore")

    state_dir: Path = Field(default_factory=default_state_dir)
    kafka_bootstrap: str = "127.0.0.1:9092"
    clickhouse_url: str = Field(default="", repr=False)  # it may carry a password: kept out of repr(settings)
    # Password for a ClickHouse server URL, kept out of the URL (and so out of process listings and
    # compose files): a mounted secret, for instance. See clickhouse_connection().
    clickhouse_password_file: Path | None = None
    # What `pulse query` reads through, when set: a read-only user's URL, password included (compose sets the
    # reader's). Empty: PULSE_CLICKHOUSE_URL. Either way every query runs with readonly = 1.
    clickhouse_query_url: str = Field(default="", repr=False)
    pii_key: SecretStr | None = None
    # Kafka security, turned into client options by pulse/kafka_security.py. There are deliberately no
    # CLI flags for these: a password on a command line is visible to every user of the machine.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    metrics_port: int = 6066
    metrics_host: str = "127.0.0.1"
    # Alertmanager receivers (deploy/alertmanager/render.sh): chat / operations centre, pager (empty: the
    # webhook URL), and the dead man's switch PulseWatchdog pings (empty: no heartbeat is sent).
    alert_webhook_url: str = "http://127.0.0.1:5001/alerts"
    alert_critical_webhook_url: str = ""
    alert_heartbeat_url: str = ""
    topic_partitions: int = 4
    # Prepended to every topic name ("" = the contract's names). `pulse bench` and `pulse soak` set one of their
    # own per run, so that they never write to the live topics.
    topic_prefix: str = ""

    # Stream processing
    consumer_group: str = "adoption-pulse"
    allowed_lateness_s: float = 600.0
    # An event more than this ahead of the worker's clock is dead-lettered `future_time` (a wrong device clock).
    max_future_s: float = Field(default=300.0, ge=0.0)
    # A partition's watermark is the N-th highest accepted event time: fewer than N outliers cannot move it.
    watermark_quorum: int = Field(default=3, ge=1)
    max_message_bytes: int = 256 * 1024
    batch_max_events: int = 20_000
    # A batch is also flushed once its messages hold this many bytes, so that large messages cannot make the
    # worker's buffers (fetched records, decoded events, insert text) grow past a known size.
    batch_max_bytes: int = Field(default=16 * 2**20, ge=1)
    batch_within_s: float = 0.5
    # glibc's mmap threshold, fixed for the worker process (pulse/allocator.py): blocks above it are mapped
    # on their own and given back when freed, so a batch's large buffers do not stay resident. 0 leaves
    # glibc's sliding default; glibc's own MALLOC_MMAP_THRESHOLD_ wins when set.
    malloc_mmap_threshold_bytes: int = Field(default=128 * 1024, ge=0, le=32 * 2**20)
    # Once the embedded store is migrated, the worker gives back the pages of chDB's library that only its
    # start-up used (~100 MB of resident memory; pulse/worker.py release_engine_start_up_pages).
    release_engine_start_up_pages: bool = True
    sink_retry_max_s: float = 30.0
    # How long the group waits for a member that stopped heartbeating. A worker that crashed (SIGKILL, OOM)
    # holds its partitions this long, so its restarted self idles until then; Faust's 60 s is long for that.
    kafka_session_timeout_s: float = 15.0
    # The consumer's fetch bounds: records handed to the worker per turn of its fetch loop, and bytes the broker
    # returns per partition and fetch (aiokafka keeps one such fetch buffered per assigned partition).
    kafka_max_poll_records: int = Field(default=10_000, ge=1)
    kafka_max_partition_fetch_bytes: int = Field(default=2**20, ge=1024)
    # The worker keeps the embedded chDB store open between flushes either way. When false it hands it
    # over, between two flushes, to another process that waits for it (`pulse query`, a second worker);
    # when true it never does.
    chdb_keep_open: bool = False
    chdb_lock_timeout_s: float = 60.0
    # A folder for each worker process to write a trace of what moves its Kafka offsets (streams/offset_trace.py):
    # a diagnostic for losses under rebalances, off by default.
    offset_trace_dir: Path | None = None
    # While this file exists the sink refuses writes: an outage drill for backpressure and recovery.
    sink_outage_flag: Path | None = None

    @field_validator("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password", "kafka_sasl_password_file",
                     "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "clickhouse_password_file",
                     mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        # docker compose and .env files pass a variable that is listed but left blank as "".
        return None if value == "" else value

    @field_validator("kafka_security_protocol", mode="before")
    @classmethod
    def _empty_means_plaintext(cls, value: object) -> object:
        return "PLAINTEXT" if value == "" else value

    @field_validator("topic_prefix")
    @classmethod
    def _legal_topic_prefix(cls, value: str) -> str:
        Topics(value)  # raises with the rule
        return value

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    def resolved_clickhouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{self.state_dir / 'clickhouse'}"

    def clickhouse_connection(self) -> tuple[str, str | None]:
        """The ClickHouse URL and, when PULSE_CLICKHOUSE_PASSWORD_FILE is set, the password read from that file
        (None: the URL's own password, if any, applies). Messages name the variables, never a password."""
        url = self.resolved_clickhouse_url()
        if self.clickhouse_password_file is None:
            return url, None
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https"):
            raise ClickHouseSettingsError("PULSE_CLICKHOUSE_PASSWORD_FILE is set, but the ClickHouse URL is not "
                                          "http:// or https:// (the embedded chDB store takes no password)")
        if parsed.password:
            raise ClickHouseSettingsError("the ClickHouse password is set twice: in PULSE_CLICKHOUSE_URL and in "
                                          "PULSE_CLICKHOUSE_PASSWORD_FILE; keep only one")
        try:
            return url, read_secret_file(self.clickhouse_password_file)
        except OSError as error:  # strerror only: the message must not quote the file
            raise ClickHouseSettingsError(f"PULSE_CLICKHOUSE_PASSWORD_FILE cannot be read: {error.strerror}") from None

    def query_connection(self) -> tuple[str, str | None]:
        """What `pulse query` connects with: PULSE_CLICKHOUSE_QUERY_URL when set, else clickhouse_connection()."""
        return (self.clickhouse_query_url, None) if self.clickhouse_query_url else self.clickhouse_connection()

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment block for a child `pulse` process (the supervised worker, demo's and bench's workers).

        `base` (default: this process's environment) with `PULSE_<FIELD>` written for every field this Settings
        was given, from the environment or from a CLI flag (`--kafka-bootstrap`, `--clickhouse-url`,
        `--state-dir`), so the child builds the same Settings. Secrets are included: the child needs them, and
        an environment, unlike a command line, is readable only by the same user. Fields left at their default
        are not written; the child computes the same default."""
        env = dict(os.environ if base is None else base)
        for name in sorted(self.model_fields_set):
            value = getattr(self, name)
            if value is not None:
                env[f"PULSE_{name.upper()}"] = _env_text(value)
        return env

    def require_pii_key(self) -> bytes:
        if self.pii_key is None:
            raise RuntimeError(
                "PULSE_PII_KEY is not set: citizen identifiers must be pseudonymized with a secret key "
                "(set PULSE_PII_KEY, or use `pulse demo`, which uses a throw-away demo key)"
            )
        return self.pii_key.get_secret_value().encode()


class ClickHouseSettingsError(PulseError, ValueError):
    """The ClickHouse settings contradict each other or name a file that cannot be read."""


def read_secret_file(path: Path) -> str:
    """A password kept in a file. Files written by editors and `echo` end in a newline that is not part of it."""
    return path.read_text(encoding="utf-8").rstrip("\r\n")


@cache
def get_settings() -> Settings:
    return Settings()


def with_overrides(**overrides: object) -> Settings:
    """Settings from the environment with CLI flags (the non-None values) laid over it. The process environment is
    left as it is: a child process gets the flags through `Settings.child_env()`."""
    given = {name: value for name, value in overrides.items() if value is not None}
    return Settings(**given) if given else get_settings()


def _env_text(value: object) -> str:
    """A settings value as its PULSE_ variable spells it (what pydantic-settings reads back to the same value)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
