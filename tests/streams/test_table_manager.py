"""The worker's app has no tables, so its table manager starts without Faust's grace second."""
from __future__ import annotations

import asyncio

from streams.batching import BulkApp, TablelessManager


class _Recovery:
    started = False

    async def start(self) -> None:
        self.started = True


def _manager(app: BulkApp) -> tuple[TablelessManager, list[str], _Recovery]:
    """The app's manager with what its start calls recorded (sleeping, registering channels; those need a
    running consumer) and a recovery that only notes it was started."""
    manager = app.tables
    assert isinstance(manager, TablelessManager)
    calls: list[str] = []

    async def sleep(seconds: float) -> None:
        calls.append(f"sleep {seconds}")

    async def update_channels() -> None:
        calls.append("channels")

    recovery = _Recovery()
    manager.sleep = sleep  # type: ignore[method-assign]
    manager._update_channels = update_channels  # type: ignore[method-assign]
    manager._recovery = recovery  # what the `recovery` property builds on first use
    return manager, calls, recovery


def test_without_tables_the_manager_starts_recovery_without_the_grace_second() -> None:
    manager, calls, recovery = _manager(BulkApp("pulse-test-tables", broker="kafka://127.0.0.1:1"))
    asyncio.run(manager.on_start())
    assert calls == ["channels"] and recovery.started


def test_with_a_table_the_stock_start_and_its_grace_second_remain() -> None:
    app = BulkApp("pulse-test-tables-2", broker="kafka://127.0.0.1:1", store="memory://")
    app.Table("counts", default=int)
    manager, calls, recovery = _manager(app)
    asyncio.run(manager.on_start())
    assert calls == ["sleep 1.0", "channels"] and recovery.started
