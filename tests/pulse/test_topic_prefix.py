"""PULSE_TOPIC_PREFIX: the contract's topic names by default, every name prefixed otherwise, and the live
topics never deleted by the clean-up of a bench or soak run."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from pulse import infra
from pulse.settings import ALL_TOPICS, INPUT_TOPICS, STREAM_TOPICS, TOPIC_DEADLETTER, TOPIC_WINDOWS, Settings, Topics


def test_default_prefix_gives_the_contract_names() -> None:
    topics = Settings().topics
    assert topics == Topics("")
    assert topics.streams == STREAM_TOPICS
    assert topics.inputs == INPUT_TOPICS
    assert (topics.deadletter, topics.windows) == (TOPIC_DEADLETTER, TOPIC_WINDOWS)
    assert topics.all == ALL_TOPICS


def test_prefix_applies_to_every_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_TOPIC_PREFIX", "bench-0a1b2c3d.")
    topics = Settings().topics
    assert topics.streams == {"payments": "bench-0a1b2c3d.pulse.payments.vietqr",
                              "dossiers": "bench-0a1b2c3d.pulse.dossiers.events",
                              "identity": "bench-0a1b2c3d.pulse.identity.activations"}
    assert topics.all == tuple(f"bench-0a1b2c3d.{name}" for name in ALL_TOPICS)
    assert not set(topics.all) & set(ALL_TOPICS)


@pytest.mark.parametrize("prefix", ["bench 1.", "a/b", "ü.", "x" * 101])
def test_illegal_prefix_is_refused_with_the_rule(prefix: str) -> None:
    with pytest.raises(ValidationError, match="A-Z a-z 0-9"):
        Settings(topic_prefix=prefix)


def test_run_clean_up_refuses_the_live_topics() -> None:
    # raised before any connection: no broker is needed (none listens on this port)
    with pytest.raises(infra.InfraError, match="refusing to delete the live topics"):
        infra.delete_run_topics(Settings(kafka_bootstrap="127.0.0.1:1"), "pulse-bench-0a1b2c3d")
