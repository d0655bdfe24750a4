"""The configured ClickHouse store, opened the same way by every command that uses it."""
from __future__ import annotations

from pulse.settings import Settings
from sinks.client import Warehouse


def open_warehouse(settings: Settings, *, keep_open: bool, share_on_request: bool = False) -> Warehouse:
    """A Warehouse for PULSE_CLICKHOUSE_URL, with the password from PULSE_CLICKHOUSE_PASSWORD_FILE if set."""
    url, password = settings.clickhouse_connection()
    return Warehouse(url, keep_open=keep_open, share_on_request=share_on_request,
                     lock_timeout_s=settings.chdb_lock_timeout_s, password=password)


def open_run_store(url: str, *, keep_open: bool = False) -> Warehouse:
    """The store of an isolated run (`pulse bench`, `pulse soak`): its own embedded chDB URL, not the configured
    one, read by the run's own process between the worker's flushes."""
    return Warehouse(url, keep_open=keep_open)
