"""All settings in one place: environment variables with the prefix PULSE_, overridable by CLI flags."""
from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

TOPIC_PAYMENTS = "pulse.payments.vietqr"
TOPIC_DOSSIERS = "pulse.dossiers.events"
TOPIC_IDENTITY = "pulse.identity.activations"
TOPIC_DEADLETTER = "pulse.deadletter"
TOPIC_WINDOWS = "pulse.windows"
INPUT_TOPICS = (TOPIC_PAYMENTS, TOPIC_DOSSIERS, TOPIC_IDENTITY)
STREAM_TOPICS = {"payments": TOPIC_PAYMENTS, "dossiers": TOPIC_DOSSIERS, "identity": TOPIC_IDENTITY}
ALL_TOPICS = (*INPUT_TOPICS, TOPIC_DEADLETTER, TOPIC_WINDOWS)

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
    clickhouse_url: str = ""
    pii_key: SecretStr | None = None
    metrics_port: int = 6066
    metrics_host: str = "127.0.0.1"
    topic_partitions: int = 4

    # Stream processing
    consumer_group: str = "adoption-pulse"
    allowed_lateness_s: float = 600.0
    max_message_bytes: int = 256 * 1024
    batch_max_events: int = 20_000
    batch_within_s: float = 0.5
    sink_retry_max_s: float = 30.0
    # Keep the embedded chDB store open between flushes (fastest). When false the worker releases it
    # after every flush so `pulse query` and a second worker can take turns with it.
    chdb_keep_open: bool = False
    chdb_lock_timeout_s: float = 60.0
    # While this file exists the sink refuses writes: an outage drill for backpressure and recovery.
    sink_outage_flag: Path | None = None

    def resolved_clickhouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{self.state_dir / 'clickhouse'}"

    def require_pii_key(self) -> bytes:
        if self.pii_key is None:
            raise RuntimeError(
                "PULSE_PII_KEY is not set: citizen identifiers must be pseudonymized with a secret key "
                "(set PULSE_PII_KEY, or use `pulse demo`, which uses a throw-away demo key)"
            )
        return self.pii_key.get_secret_value().encode()


@cache
def get_settings() -> Settings:
    return Settings()


def apply_overrides(**overrides: object) -> Settings:
    """Settings with CLI flags (non-None values) laid over the environment."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"PULSE_{name.upper()}"] = str(value)
    get_settings.cache_clear()
    return get_settings()
