"""The one way the project talks to ClickHouse: embedded chDB (`chdb:///path`) or a server (`http[s]://...`).

chDB allows one process at a time per path, so access goes through a lease that holds an exclusive file
lock next to the data. A process waiting for the lock says so in a request file beside it; a worker
holding the store gives it back between two flushes when it sees a request, so `pulse query` or a second
worker can use it. A server needs no lock and keeps one client.
"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from schemas.errors import PulseError
from schemas.redact import redact_url
from sinks.deferred_imports import defer_dataframe_libraries

DEFAULT_DATABASE = "pulse"
REQUEST_POLL_S = 0.2  # how often a holder that shares on request looks for a waiting process
HAND_OVER_S = 0.15  # how long it then leaves the store to the waiter before leasing it again


class ClickHouseUrlError(PulseError, ValueError):
    """A ClickHouse URL this client cannot use; the message shows it redacted."""


# The embedded engine's caches, sized for one worker's store instead of a server's defaults (5 GiB each for
# marks and primary indexes): they only fill as parts are read, but nothing else bounds them in the worker.
CHDB_ENGINE_OPTIONS = {"mark_cache_size": str(64 * 2**20), "index_mark_cache_size": str(16 * 2**20),
                       "primary_index_cache_size": str(64 * 2**20), "uncompressed_cache_size": "0"}

# chDB's own jemalloc keeps freed pages resident for 5 s (dirty_decay_ms:5000), longer than a batch: every
# batch's engine memory then stacks on the last one's. Giving pages back at once lowered the peak RssAnon of
# the batch path by ~40 MB (docs/perf/memory.md). chDB's jemalloc reads JE_MALLOC_CONF (not MALLOC_CONF, which
# it ignores), once, when the library loads: this must run before chdb is first imported, and an operator's
# own value wins.
CHDB_JEMALLOC_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"
os.environ.setdefault("JE_MALLOC_CONF", CHDB_JEMALLOC_CONF)


class StoreBusy(PulseError, TimeoutError):
    """The embedded store stayed locked by another process for longer than the allowed wait."""


class Warehouse:
    """A leased ClickHouse client for one URL."""

    def __init__(self, url: str, *, keep_open: bool = True, lock_timeout_s: float = 60.0,
                 password: str | None = None, share_on_request: bool = False) -> None:
        """`password`, when given, is used instead of the one in a server URL: it comes from a file, so that
        it need not sit in the URL. It is kept only for the connection and shown nowhere.

        `keep_open=False` gives the embedded store back after every lease (one-off readers). A holder that
        keeps it open can still `share_on_request`: it gives it back, between two leases, when another
        process asks for it. That is how a worker shares the store: reopening chDB for every flush instead
        leaves memory behind (about 4 MB a cycle in chDB 4.x) and gets slower as parts accumulate."""
        self.url = url
        self.keep_open = keep_open
        self.share_on_request = share_on_request
        self._acquired_ns = 0
        self._watcher: threading.Thread | None = None
        self.lock_timeout_s = lock_timeout_s
        parsed = urlparse(url)
        self.embedded = parsed.scheme == "chdb"
        if not self.embedded:
            _check_server_url(url, parsed)
        elif password is not None:
            raise ClickHouseUrlError(f"ClickHouse URL {redact_url(url)}: the embedded chDB store takes no password")
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
        defer_dataframe_libraries()
        if self.embedded:
            self._lock_embedded_store()
            try:
                self.chdb_path.mkdir(parents=True, exist_ok=True)
                self._client = clickhouse_connect.get_client(interface="chdb", path=str(self.chdb_path),
                                                             chdb_options=CHDB_ENGINE_OPTIONS)
            except BaseException:
                self._release()
                raise
            if self.share_on_request and self._watcher is None:
                self._watcher = threading.Thread(target=self._give_back_when_asked, name="chdb-share", daemon=True)
                self._watcher.start()
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

    @property
    def _request_path(self) -> Path:
        return self.chdb_path.with_name(self.chdb_path.name + ".wanted")

    def _asked_for(self) -> bool:
        """Has another process asked for the store since this one took it?"""
        try:
            return self._request_path.stat().st_mtime_ns > self._acquired_ns
        except FileNotFoundError:
            return False

    def _ask_for_store(self) -> None:
        self._request_path.touch()
        os.utime(self._request_path)  # touch() leaves the time of an existing file alone on some systems

    def _give_back_when_asked(self) -> None:
        # Between two leases only: a lease in progress holds the mutex, and this thread never waits for it.
        while True:
            time.sleep(REQUEST_POLL_S)
            if self._client is None or not self._asked_for() or not self._mutex.acquire(blocking=False):
                continue
            try:
                if self._client is not None and self._asked_for():
                    self._release()
                    # The waiter polls the lock every 20 ms: keep our own next lease from grabbing it first.
                    time.sleep(HAND_OVER_S)
            finally:
                self._mutex.release()

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
                self._ask_for_store()
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreBusy(
                        f"the embedded ClickHouse store {self.chdb_path} is held by another process "
                        f"(a worker that keeps it open?) for more than {self.lock_timeout_s:.0f} s"
                    ) from None
                time.sleep(0.02)
        self._lock_fd = fd
        self._acquired_ns = time.time_ns()


def _check_server_url(url: str, parsed) -> None:  # urllib's ParseResult
    """Reject a server URL that urllib would misread, with messages that never show its credentials."""
    if parsed.scheme not in ("http", "https"):
        raise ClickHouseUrlError(f"unsupported ClickHouse URL scheme {parsed.scheme!r}: use chdb://, http:// or https://")
    shown = redact_url(url)
    if "@" in url and "@" not in parsed.netloc or "@" in parsed.path:
        raise ClickHouseUrlError(f"ClickHouse URL {shown}: percent-encode / ? # @ in the user name and password")
    try:
        parsed.port  # noqa: B018 - urllib checks the port when it is read
    except ValueError:
        raise ClickHouseUrlError(f"ClickHouse URL {shown}: the port must be a number from 1 to 65535") from None


def _server_client(parsed, password: str | None) -> Client:  # urllib's ParseResult
    return clickhouse_connect.get_client(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
        username=unquote(parsed.username or "default"),
        password=unquote(parsed.password or "") if password is None else password,
        secure=parsed.scheme == "https",
        database="default",
        # A session of its own: the sink's event_index lookup stages its ids in a temporary table (sinks/sink.py),
        # which lives in the session. The client's default too; said here because the lookup depends on it.
        autogenerate_session_id=True,
    )

