"""Secrets stay out of logs and error messages (issue 8): the ClickHouse URL's password and PULSE_PII_KEY."""
from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest

from pulse.settings import Settings
from sinks.client import Warehouse, redact_url
from sinks.sink import ClickHouseSink
from streams.pipeline import Message, Pipeline
from tests.hardening.hostile import ACCOUNT, bad_qr_payment, dumps

PASSWORD = "s3cr3t"
TOPICS = {"pulse.payments.vietqr": "payments"}


def everything_said(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    logging.getLogger("pulse.test").exception("sink flush failed (%s); retrying", error)  # as the worker logs it
    return "".join(traceback.format_exception(error)) + repr(error) + str(error) + caplog.text


@pytest.mark.parametrize(("url", "fragments"), [
    (f"http://u:{PASSWORD}@127.0.0.1:1/pulse", [PASSWORD]),
    (f"https://u:{PASSWORD}@127.0.0.1:1/pulse", [PASSWORD]),
    ("http://u:s3/cr3t@127.0.0.1:1/pulse", ["s3/cr3t", "cr3t@"]),  # unencoded / once showed up as host and path
    ("http://u:s3#cr3t@127.0.0.1:1/pulse", ["s3#cr3t", "'s3'"]),
    ("http://u:s3?cr3t@127.0.0.1:1/pulse", ["s3?cr3t", "'s3'"]),
    (f"http://u:{PASSWORD}@127.0.0.1:99999/pulse", [PASSWORD]),
    (f"http://u:{PASSWORD}%40x@127.0.0.1:1/pulse", [PASSWORD]),
])
def test_clickhouse_password_is_in_no_error_and_no_log(url: str, fragments: list[str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    said = ""
    warehouse = None
    try:
        warehouse = Warehouse(url, lock_timeout_s=1)
        said += repr(warehouse)
        sink = ClickHouseSink(warehouse)
        Pipeline(sink, TOPICS, lateness_s=600, max_message_bytes=10_000).process(
            [Message("pulse.payments.vietqr", 0, 0, b"k", dumps(bad_qr_payment(1)), 0.0)])
    except Exception as error:  # noqa: BLE001 - whatever it is, its text is what we check
        said += everything_said(error, caplog)
    else:
        pytest.fail("the sink cannot be reachable")
    finally:
        if warehouse is not None:
            warehouse.close()
    assert "127.0.0.1" in said  # the message still says where
    for fragment in fragments:
        assert fragment not in said, f"{fragment!r} leaked: {said[-2000:]}"
    assert ACCOUNT not in said


def test_redact_url() -> None:
    assert redact_url("http://u:p@h:8123/db") == "http://***@h:8123/db"
    assert redact_url("http://u:p/q#r@h/db") == "http://***@h/db"
    assert redact_url("http://h:8123/db") == "http://h:8123/db"
    assert redact_url("chdb:///var/lib/pulse") == "chdb:///var/lib/pulse"


def test_pii_key_is_never_shown_by_settings(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                            tmp_path: Path) -> None:
    key = "pii-key-in-settings-0b7e"
    monkeypatch.setenv("PULSE_PII_KEY", key)
    settings = Settings(state_dir=tmp_path)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("pulse.test").info("settings: %s %r", settings, settings)
    shown = str(settings) + repr(settings) + settings.model_dump_json() + caplog.text
    assert key not in shown
    assert settings.require_pii_key() == key.encode()  # and yet it is there for the producer


def test_pipeline_logs_hold_no_personal_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sink = ClickHouseSink(Warehouse(f"chdb://{tmp_path / 'ch'}", keep_open=True))
    try:
        outcome = Pipeline(sink, TOPICS, lateness_s=600, max_message_bytes=10_000).process(
            [Message("pulse.payments.vietqr", 0, 0, b"k", dumps(bad_qr_payment(1)), 0.0)])
    finally:
        sink.close()
    assert [record.reason for _, record in outcome.dead_letters] == ["bad_qr"]
    assert ACCOUNT not in caplog.text and ACCOUNT not in repr(outcome)
