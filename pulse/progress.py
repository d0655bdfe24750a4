"""Progress bars for long data-engineering commands (replay, archive, backfill).

One bar per command: how far through its input it is, events handled, events per second (over the
last few seconds), the event-time position reached and the time left. The bar is drawn on stderr, and
only when stdout and stderr are terminals and the user did not pass `--quiet`, so piped output and logs
stay clean; the command's JSON report on stdout is never mixed with it.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from datetime import datetime, timezone
from types import TracebackType

RATE_WINDOW_S = 5.0


def interactive(quiet: bool) -> bool:
    """Whether to draw progress: not asked to be quiet and both output streams are terminals."""
    return not quiet and sys.stdout.isatty() and sys.stderr.isatty()


def format_event_time(seconds: float | None) -> str:
    if not seconds:
        return "–"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class Tracker:
    """A progress bar, or nothing when disabled; the same calls either way.

    `total` and `completed` are in the command's own units (bytes of a file, Kafka messages, window
    chunks); `events` counts what the user thinks in (messages sent, rows recomputed).
    """

    def __init__(self, description: str, total: float | None, *, enabled: bool, unit: str = "events",
                 console=None) -> None:  # a rich Console; stderr when None
        self.description = description
        self.console = console
        self.total = total
        self.enabled = enabled
        self.unit = unit
        self.events = 0
        self.completed = 0.0
        self.position: float | None = None
        self._samples: deque[tuple[float, int]] = deque()
        self._progress = None
        self._task = None

    def __enter__(self) -> Tracker:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=16),
                TaskProgressColumn(),
                TextColumn("{task.fields[events]:,} {task.fields[unit]} [cyan]{task.fields[rate]:,.0f}/s"),
                TextColumn("[magenta]at {task.fields[position]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console or Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(_short(self.description), total=self.total, events=0, rate=0.0,
                                                 position="–", unit=self.unit)
        self._samples.append((time.monotonic(), 0))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.stop()
            self._progress = None

    @property
    def rate(self) -> float:
        """Events per second over the last RATE_WINDOW_S seconds."""
        if len(self._samples) < 2:
            return 0.0
        (first_t, first_n), (last_t, last_n) = self._samples[0], self._samples[-1]
        return (last_n - first_n) / (last_t - first_t) if last_t > first_t else 0.0

    def update(self, *, events: int = 0, completed: float | None = None, advance: float = 0.0,
               position: float | None = None, total: float | None = None) -> None:
        """Add `events`; set or advance the units done; move the event-time position."""
        self.events += events
        self.completed = completed if completed is not None else self.completed + advance
        if position:
            self.position = position
        if total is not None:
            self.total = total
        now = time.monotonic()
        self._samples.append((now, self.events))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        if self._progress is not None:
            self._refresh()

    def _refresh(self) -> None:
        self._progress.update(self._task, completed=self.completed, total=self.total, events=self.events,
                              rate=self.rate, position=format_event_time(self.position))
