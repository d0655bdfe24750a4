"""Click parameter types shared by the commands: a bad value is a usage error (one line, exit status 2)
raised while the command line is read, before anything starts. The parsing itself is `pulse/parsing.py`'s."""
from __future__ import annotations

from datetime import datetime

import click

from pulse.parsing import OffsetRange, parse_offsets, parse_speed, parse_time

POSITIVE_COUNT = click.IntRange(min=1)
POSITIVE_NUMBER = click.FloatRange(min=0, min_open=True)
PORT = click.IntRange(min=0, max=65535)


class IsoTime(click.ParamType):
    """An ISO 8601 moment with a UTC offset (`2026-01-05T07:00:00+07:00`, `...Z`); `now` too if allowed."""

    name = "iso-time"

    def __init__(self, *, allow_now: bool = False) -> None:
        self.allow_now = allow_now

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value), allow_now=self.allow_now)
        except ValueError as error:
            self.fail(str(error), param, ctx)


class OffsetRanges(click.ParamType):
    """`topic:partition:start-end[,...]`, end excluded; `start-` reads to the partition's current end."""

    name = "offset-ranges"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> list[OffsetRange]:
        if isinstance(value, list):
            return value
        try:
            return parse_offsets(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


class Speed(click.ParamType):
    """`max` (None: as fast as the target takes it) or a positive event-time factor."""

    name = "speed"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float | None:
        try:
            return parse_speed(value)  # type: ignore[arg-type]
        except ValueError as error:
            self.fail(str(error), param, ctx)


class Faults(click.ParamType):
    """`KIND=FRACTION,...` as the simulator's fault plan reads it (the parser is the simulator's)."""

    name = "faults"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from simulators.faults import parse_faults

        text = str(value)
        for part in filter(None, text.split(",")):
            _kind, _, fraction = part.partition("=")
            try:
                float(fraction)
            except ValueError:
                self.fail(f"{part!r}: write KIND=FRACTION, e.g. duplicate=0.01", param, ctx)
        try:
            parse_faults(text)
        except ValueError as error:
            self.fail(str(error), param, ctx)
        return text


ISO_TIME = IsoTime()
ISO_TIME_OR_NOW = IsoTime(allow_now=True)
OFFSET_RANGES = OffsetRanges()
SPEED = Speed()
FAULTS = Faults()
