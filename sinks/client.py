"""The one way the project talks to ClickHouse: embedded chDB (`chdb:///path`) or a server (`http[s]://...`).

chDB allows one process at a time per path, so access goes through a lease that holds an exclusive file
lock next to the data; a worker can give the store back between flushes so `pulse query` or a second
worker can use it. A server needs no lock and keeps one client.
"""
from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

DEFAULT_DATABASE = "pulse"


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://).*@", re.DOTALL)  # greedy: up to the last @


def redact_url(url: str) -> str:
    """The URL with its user name and password replaced by `***`, for messages and logs.

    Everything up to the last `@` is treated as credentials, so a password with an unencoded `/`, `?`,
    `#` or `@` is hidden too (urllib would read part of it as the host, port or path)."""
    return _USERINFO.sub(r"\1***@", url)


class StoreBusy(TimeoutError):
    """The embedded store stayed locked by another process for longer than the allowed wait."""


class Warehouse:
    """A leased ClickHouse client for one URL."""

    def __init__(self, url: str, *, keep_open: bool = True, lock_timeout_s: float = 60.0,
                 password: str | None = None) -> None:
        """`password`, when given, is used instead of the one in a server URL: it comes from a file, so that
        it need not sit in the URL. It is kept only for the connection and shown nowhere."""
        self.url = url
        self.keep_open = keep_open
        self.lock_timeout_s = lock_timeout_s
        parsed = urlparse(url)
        self.embedded = parsed.scheme == "chdb"
        if not self.embedded:
            _check_server_url(url, parsed)
        elif password is not None:
            raise ValueError(f"ClickHouse URL {redact_url(url)}: the embedded chDB store takes no password")
        self._password = password
        self.database = DEFAULT_DATABASE if self.embedded else (parsed.path.strip("/") or DEFAULT_DATABASE)
        self._parsed = parsed
        self._client: Client | None = None
        self._lock_fd: int | None = None
        self._mutex = threading.RLock()

    def __repr__(self) -> str:
        return f"Warehouse({redact_url(self.url)!r})"

    @property
    def chdb_path(self) -> Path:
        return Path(unquote(self._parsed.path))

    @contextmanager
    def lease(self) -> Iterator[Client]:
        """A connected client, exclusive to this process while the lease lasts."""
        with self._mutex:
            self._acquire()
            try:
                yield self._client  # type: ignore[misc]
            finally:
                if not self.keep_open:
                    self._release()

    def close(self) -> None:
        with self._mutex:
            self._release()

    def _acquire(self) -> None:
        if self._client is not None:
            return
        if self.embedded:
            self._lock_embedded_store()
            try:
                self.chdb_path.mkdir(parents=True, exist_ok=True)
                self._client = clickhouse_connect.get_client(interface="chdb", path=str(self.chdb_path))
            except BaseException:
                self._release()
                raise
        else:
            self._client = _server_client(self._parsed, self._password)

    def _release(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _lock_embedded_store(self) -> None:
        lock_path = self.chdb_path.with_name(self.chdb_path.name + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreBusy(
                        f"the embedded ClickHouse store {self.chdb_path} is held by another process "
                        f"(a worker that keeps it open?) for more than {self.lock_timeout_s:.0f} s"
                    ) from None
                time.sleep(0.02)
        self._lock_fd = fd


def _check_server_url(url: str, parsed) -> None:  # noqa: ANN001 - urllib's ParseResult
    """Reject a server URL that urllib would misread, with messages that never show its credentials."""
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"unsupported ClickHouse URL scheme {parsed.scheme!r}: use chdb://, http:// or https://")
    shown = redact_url(url)
    if "@" in url and "@" not in parsed.netloc or "@" in parsed.path:
        raise ValueError(f"ClickHouse URL {shown}: percent-encode / ? # @ in the user name and password")
    try:
        parsed.port  # noqa: B018 - urllib checks the port when it is read
    except ValueError:
        raise ValueError(f"ClickHouse URL {shown}: the port must be a number from 1 to 65535") from None


def _server_client(parsed, password: str | None) -> Client:  # noqa: ANN001 - urllib's ParseResult
    return clickhouse_connect.get_client(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
        username=unquote(parsed.username or "default"),
        password=unquote(parsed.password or "") if password is None else password,
        secure=parsed.scheme == "https",
        database="default",
    )
