"""Values typed on a command line: moments with a UTC offset, Kafka offset ranges, replay speeds.

Plain functions raising ValueError, so library code and tests use them without click; `pulse/cli/params.py`
wraps each in a click parameter type, which turns the ValueError into a usage error (exit status 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


def parse_time(text: str, name: str = "", *, allow_now: bool = False) -> datetime:
    """An ISO 8601 moment with a UTC offset (`Z` or `+07:00`); a time without one is ambiguous.

    `name` (e.g. `--since`) starts the message; `allow_now` accepts `now` (the current UTC time)."""
    prefix = f"{name}: " if name else ""
    if allow_now and text.strip() == "now":
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        alternative = " or `now`" if allow_now else ""
        raise ValueError(f"{prefix}{text!r} is not an ISO 8601 time like 2026-01-05T07:00:00+07:00{alternative}") \
            from None
    if moment.tzinfo is None:
        raise ValueError(f"{prefix}{text!r} needs a UTC offset, e.g. {text.strip()}+07:00 or {text.strip()}Z "
                         "(a time with no UTC offset is ambiguous)")
    return moment


def parse_speed(text: str | float | None) -> float | None:
    """`max` (None: as fast as possible) or a positive event-time factor."""
    if text is None or str(text).strip().lower() == "max":
        return None
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"--speed: {text!r} is neither `max` nor a number") from None
    if not factor > 0:
        raise ValueError(f"--speed must be positive, got {text}")
    return factor


@dataclass(frozen=True)
class OffsetRange:
    topic: str
    partition: int
    start: int
    end: int | None  # exclusive; None = the partition's current end

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.start}-{'' if self.end is None else self.end}"


def parse_offsets(spec: str) -> list[OffsetRange]:
    """`topic:partition:start-end[,...]`, end exclusive; `start-` reads to the current end."""
    ranges = []
    for part in filter(None, (piece.strip() for piece in spec.split(","))):
        try:
            topic, partition, span = part.rsplit(":", 2)
            start_text, _, end_text = span.partition("-")
            item = OffsetRange(topic, int(partition), int(start_text), int(end_text) if end_text else None)
        except ValueError:
            raise ValueError(f"--from-offsets: {part!r} is not topic:partition:start-end") from None
        if not topic or item.partition < 0 or item.start < 0 or (item.end is not None and item.end <= item.start):
            raise ValueError(f"--from-offsets: {part!r} is not a non-empty range (end is exclusive)")
        ranges.append(item)
    if not ranges:
        raise ValueError("--from-offsets: no range given")
    return ranges
