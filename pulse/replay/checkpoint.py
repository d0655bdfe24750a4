"""`<state dir>/replay-checkpoints/<hash>.json`: where a replay of one source into one target got to."""
from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from pulse.replay.records import Source, digest
from schemas.redact import redact_url as _redact_url

CHECKPOINT_DIR = "replay-checkpoints"
CHECKPOINT_FORMAT = 1


def redact_url(url: str) -> str:
    """A URL as checkpoints and reports keep it: without its credentials (the shared redactor, `mask=None`)."""
    return _redact_url(url, mask=None)


class Checkpoint:
    """`<state>/replay-checkpoints/<hash>.json`, written atomically (temporary file, fsync, rename)."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = path
        self.data = data

    @classmethod
    def locate(cls, state_dir: Path, source_identity: dict, target: str) -> Path:
        name = digest({"source": source_identity, "target": target})[:20]
        return state_dir / CHECKPOINT_DIR / f"{name}.json"

    @classmethod
    def open(cls, state_dir: Path, source: Source, target: str, *, resume: bool) -> tuple[Checkpoint, bool]:
        """The stored checkpoint when resuming and there is one (True), else a fresh one (False)."""
        path = cls.locate(state_dir, source.identity, target)
        if resume and path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") == CHECKPOINT_FORMAT:
                return cls(path, data), True
        fresh = {"format": CHECKPOINT_FORMAT, "source": source.identity, "target": target,
                 "source_start": source.initial_cursor(), "cursor": source.initial_cursor(), "sent": {},
                 "pending": None, "stored": [], "complete": False, "runs": 0, "updated_at": None}
        return cls(path, fresh), False

    def save(self) -> None:
        self.data["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(f".tmp{os.getpid()}")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(self.data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def add_sent(self, counts: Counter) -> None:
        sent = Counter(self.data.get("sent") or {})
        sent.update(counts)
        self.data["sent"] = dict(sent)

