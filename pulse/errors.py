"""The error root (`PulseError`, defined in `schemas/errors.py`, the bottom layer) and one-line reasons for
errors that HTTP and database libraries describe at length."""
from __future__ import annotations

import re

from schemas.errors import PulseError, PulseUsageError

__all__ = ["PulseError", "PulseUsageError", "short_reason"]

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def short_reason(error: BaseException) -> str:
    """`Connection refused` for a connection error buried in a retry story, else the message's first line."""
    text = str(error)
    found = _ERRNO.search(text)
    if found:
        return found.group(1).strip()
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__
