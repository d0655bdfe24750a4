"""The project's one error root.

`schemas/` is the bottom layer (it imports nothing of the project), so the root lives here where every layer
may import it: `streams/`, `sinks/`, `simulators/` and `pulse/` all depend on `schemas/`, never the other way.
`pulse.errors` re-exports it for the command line. Every error class of the project derives from `PulseError`
and keeps its standard-library base as well (`class StoreBusy(PulseError, TimeoutError)`), so callers that
catch `TimeoutError` or `ValueError` still work, and the CLI prints any `PulseError` as one line.
"""
from __future__ import annotations


class PulseError(Exception):
    """An expected failure: bad input or a service that refused; its message is meant for the user."""


class PulseUsageError(PulseError, ValueError):
    """A value given by the user (a flag, a file's content) cannot be used; the CLI exits with status 2."""
