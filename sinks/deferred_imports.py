"""Keep pandas and pyarrow out of a process that never uses them (the worker), without taking them away.

Two libraries import them eagerly although the worker needs neither: chDB imports pyarrow when its first
connection opens (for its Arrow result formats), and clickhouse-connect imports pandas on the first insert
(to ask whether the rows are a DataFrame). Together that was ~0.35 s of a worker's start and ~40 MB of
anonymous plus ~35 MB of file-backed resident memory (docs/perf/memory.md). Both stay available: each is
replaced by a stand-in that imports the real library the first time anything is asked of it, except the
one question whose answer is known without it: no object can be a pandas DataFrame (or a numpy array)
while pandas (numpy) was never imported in this process.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType

_lock = threading.Lock()


class _NeverInstantiated:
    """What `isinstance` is checked against while the real library is not imported: nothing is one."""


class OnDemand:
    """Stands for module `name`; imports it on the first attribute asked for and forwards from then on.

    `absent_types`: attribute names that are classes of the library; while the library is not imported
    they answer `_NeverInstantiated` (an isinstance check against them is False, as it would be)."""

    def __init__(self, name: str, absent_types: frozenset[str] = frozenset()) -> None:
        self._name = name
        self._absent_types = absent_types
        self._module: ModuleType | None = None

    def __bool__(self) -> bool:  # installed (checked before a stand-in is made), so a check for it passes
        return True

    def __repr__(self) -> str:
        return f"OnDemand({self._name!r}, loaded={self._module is not None or self._name in sys.modules})"

    def __getattr__(self, attribute: str):  # only called for what the stand-in itself lacks
        if self._module is None and attribute in self._absent_types and self._name not in sys.modules:
            return _NeverInstantiated
        return getattr(self._load(), attribute)

    def _load(self) -> ModuleType:
        if self._module is None:
            with _lock:
                if self._module is None:
                    self._module = importlib.import_module(self._name)
        return self._module


def _installed(name: str) -> bool:
    return name in sys.modules or importlib.util.find_spec(name) is not None


def defer_dataframe_libraries() -> None:
    """Install the stand-ins; call before chDB's first connection. Idempotent; a library already imported,
    or not installed, is left alone."""
    with _lock:
        _defer_pyarrow_in_chdb()
        _defer_pandas_in_clickhouse_connect()


def _defer_pyarrow_in_chdb() -> None:
    if "chdb.state.sqlitelike" in sys.modules or "pyarrow" in sys.modules or not _installed("pyarrow"):
        return
    # chDB's connection module does `try: import pyarrow as pa; except ImportError: pa = None` at import:
    # make that import fail for this one moment, then give the module a stand-in for `pa`.
    sys.modules["pyarrow"] = None  # type: ignore[assignment] - the documented way to make an import fail
    try:
        sqlitelike = importlib.import_module("chdb.state.sqlitelike")
    finally:
        del sys.modules["pyarrow"]
    sqlitelike.pa = OnDemand("pyarrow")


def _defer_pandas_in_clickhouse_connect() -> None:
    from clickhouse_connect.driver import options

    # The module resolves `pd` and `np` lazily into its own globals (a module __getattr__); setting them
    # first means its resolver finds them set. `pd_time_test` goes with `pd` and needs no pandas.
    resolved = vars(options)
    for attribute, module, types in (("pd", "pandas", {"DataFrame"}), ("np", "numpy", {"ndarray"})):
        if attribute in resolved or module in sys.modules or not _installed(module):
            continue
        resolved[attribute] = OnDemand(module, frozenset(types))
        if attribute == "pd":
            resolved["pd_time_test"] = options._pd_time_test
