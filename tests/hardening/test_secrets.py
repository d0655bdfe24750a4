"""Secrets stay out of logs and error messages (issue 8): the ClickHouse password (in the URL or in
PULSE_CLICKHOUSE_PASSWORD_FILE) and PULSE_PII_KEY."""
from __future__ import annotations

import base64
import logging
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pulse.settings import ClickHouseSettingsError, Settings
from sinks.client import Warehouse, redact_url
from sinks.sink import ClickHouseSink
from streams.pipeline import Message, Pipeline
from tests.hardening.hostile import ACCOUNT, bad_qr_payment, dumps
from tests.support.services import PulseEnv

PASSWORD = "s3cr3t"
TOPICS = {"pulse.payments.vietqr": "payments"}


def everything_said(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    logging.getLogger("pulse.test").exception("sink flush failed (%s); retrying", error)  # as the worker logs it
    return "".join(traceback.format_exception(error)) + repr(error) + str(error) + caplog.text


@pytest.mark.parametrize(("url", "password", "fragments"), [
    (f"http://u:{PASSWORD}@127.0.0.1:1/pulse", None, [PASSWORD]),
    (f"https://u:{PASSWORD}@127.0.0.1:1/pulse", None, [PASSWORD]),
    ("http://u:s3/cr3t@127.0.0.1:1/pulse", None, ["s3/cr3t", "cr3t@"]),  # unencoded / once showed up as host, path
    ("http://u:s3#cr3t@127.0.0.1:1/pulse", None, ["s3#cr3t", "'s3'"]),
    ("http://u:s3?cr3t@127.0.0.1:1/pulse", None, ["s3?cr3t", "'s3'"]),
    (f"http://u:{PASSWORD}@127.0.0.1:99999/pulse", None, [PASSWORD]),
    (f"http://u:{PASSWORD}%40x@127.0.0.1:1/pulse", None, [PASSWORD]),
    ("http://u@127.0.0.1:1/pulse", PASSWORD, [PASSWORD]),  # from PULSE_CLICKHOUSE_PASSWORD_FILE
    ("https://127.0.0.1:1/pulse", PASSWORD, [PASSWORD]),
])
def test_clickhouse_password_is_in_no_error_and_no_log(url: str, password: str | None, fragments: list[str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    said = ""
    warehouse = None
    try:
        warehouse = Warehouse(url, lock_timeout_s=1, password=password)
        said += repr(warehouse)
        sink = ClickHouseSink(warehouse)
        Pipeline(sink, TOPICS, lateness_s=600, max_message_bytes=10_000).process(
            [Message("pulse.payments.vietqr", 0, 0, b"k", dumps(bad_qr_payment(1)), 0.0)])
    except Exception as error:  # whatever it is, its text is what we check
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


class AuthorizationRecorder(BaseHTTPRequestHandler):
    """Stands in for a ClickHouse server: notes who logs in, then refuses them as ClickHouse does (HTTP 401,
    code 516), so the client fails quickly after one request. The real server cannot run on these machines."""

    seen: list[str]  # set per server by recording_server()

    def do_GET(self) -> None:  # the name http.server calls
        self.seen.append(self.headers.get("Authorization", ""))
        body = b"Code: 516. DB::Exception: Authentication failed. (AUTHENTICATION_FAILED)"
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-ClickHouse-Exception-Code", "516")
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:  # not on stderr: the test reads what was said
        pass


@contextmanager
def recording_server() -> Iterator[tuple[int, list[str]]]:
    """A local HTTP server on a free port; yields the port and the Authorization headers it received."""
    seen: list[str] = []
    handler = type("Recorder", (AuthorizationRecorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("from_file", [True, False], ids=["password-file", "password-in-url"])
def test_the_server_is_given_the_password_from_the_file(tmp_path: Path, from_file: bool) -> None:
    file_password, url_password = "from-the-file-7c1d", "from-the-url-93ab"
    password_file = tmp_path / "clickhouse-password"
    password_file.write_text(file_password + "\n")
    with recording_server() as (port, seen):
        settings = Settings(state_dir=tmp_path, **(
            {"clickhouse_url": f"http://pulse@127.0.0.1:{port}/pulse", "clickhouse_password_file": password_file}
            if from_file else {"clickhouse_url": f"http://pulse:{url_password}@127.0.0.1:{port}/pulse"}))
        url, password = settings.clickhouse_connection()
        warehouse = Warehouse(url, password=password)
        with pytest.raises(Exception) as refused:  # whichever error clickhouse-connect raises
            with warehouse.lease():
                pass
    assert "516" in str(refused.value)  # it did reach our server and was refused there
    expected = file_password if from_file else url_password
    assert seen and set(seen) == {basic_auth("pulse", expected)}
    said = str(refused.value) + repr(refused.value) + repr(warehouse) + repr(settings)
    assert file_password not in said and url_password not in said


def test_pulse_query_logs_in_with_the_password_file(tmp_path: Path) -> None:
    password = "cli-file-password-51e0"
    password_file = tmp_path / "clickhouse-password"
    password_file.write_text(password + "\n")
    with recording_server() as (port, seen):
        env = PulseEnv(state_dir=tmp_path / "state", bootstrap="127.0.0.1:1", extra={
            "PULSE_CLICKHOUSE_URL": f"http://pulse@127.0.0.1:{port}/pulse",
            "PULSE_CLICKHOUSE_PASSWORD_FILE": str(password_file)})
        result = env.pulse("query", "SELECT 1", timeout=120, check=False)
    assert result.returncode != 0
    assert "516" in result.stderr, result.stderr[-2000:]
    assert seen and set(seen) == {basic_auth("pulse", password)}
    assert password not in result.stdout + result.stderr


@pytest.mark.parametrize(("url", "file_name", "message"), [
    (f"http://u:{PASSWORD}@127.0.0.1:1/pulse", "password", "set twice"),
    ("", "password", "embedded chDB store takes no password"),
    ("chdb:///tmp/x", "password", "embedded chDB store takes no password"),
    ("http://u@127.0.0.1:1/pulse", "absent", "PULSE_CLICKHOUSE_PASSWORD_FILE cannot be read: No such file"),
])
def test_password_file_conflicts_are_refused_clearly(tmp_path: Path, url: str, file_name: str,
                                                     message: str) -> None:
    (tmp_path / "password").write_text("file-secret-0d42\n")
    settings = Settings(state_dir=tmp_path, clickhouse_url=url, clickhouse_password_file=tmp_path / file_name)
    with pytest.raises(ClickHouseSettingsError, match=message) as refused:
        settings.clickhouse_connection()
    assert PASSWORD not in str(refused.value) and "file-secret-0d42" not in str(refused.value)


def test_blank_password_file_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PULSE_CLICKHOUSE_PASSWORD_FILE", "")  # as a copied .env.example leaves it
    assert Settings(state_dir=tmp_path).clickhouse_connection() == (f"chdb://{tmp_path / 'clickhouse'}", None)


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
