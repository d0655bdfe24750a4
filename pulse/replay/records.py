"""What every replay source yields: a `Record` per message, routed to its stream, behind the `Source`
protocol; and the few byte-level readings of a message value the sources and targets share."""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

import orjson

from pulse.settings import STREAM_TOPICS
from simulators.generate import STREAM_OF_TYPE

if TYPE_CHECKING:
    from kafka import TopicPartition

STREAM_OF_TOPIC = {topic: stream for stream, topic in STREAM_TOPICS.items()}

_TYPE = re.compile(rb'"type"\s*:\s*"(payment|dossier|id_activation)"')
_KEY = {"dossier": re.compile(rb'"dossier_id"\s*:\s*"([^"]{1,64})"')}
_EVENT_ID = re.compile(rb'"event_id"\s*:\s*"([^"]{1,64})"')
_EVENT_TIME = re.compile(rb'"event_time"\s*:\s*"([^"]{10,40})"')


def event_time_of(value: bytes | None) -> float | None:
    """Event time (Unix seconds) of a message value, without decoding all of it; None if it has none."""
    if not value:
        return None
    match = _EVENT_TIME.search(value)
    if not match:
        return None
    try:
        moment = datetime.fromisoformat(match.group(1).decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def route(line: bytes) -> tuple[str, bytes | None]:
    """Stream and key of a line, also for a damaged one (the worker dead-letters it, with its origin)."""
    try:
        event = orjson.loads(line)
        kind = event["type"]
        return STREAM_OF_TYPE[kind], str(event["dossier_id" if kind == "dossier" else "event_id"]).encode()
    except (orjson.JSONDecodeError, KeyError, TypeError):
        match = _TYPE.search(line)
        kind = match.group(1).decode() if match else "payment"
        key = (_KEY.get(kind) or _EVENT_ID).search(line)
        return STREAM_OF_TYPE[kind], key.group(1) if key else None


def stream_of_value(value: bytes | None) -> str:
    return route(value)[0] if value else "payments"


def digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def tp_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def tp_of(key: str) -> TopicPartition:
    from kafka import TopicPartition

    topic, partition = key.rsplit(":", 1)
    return TopicPartition(topic, int(partition))


@dataclass(slots=True)
class Record:
    stream: str
    key: bytes | None
    value: bytes | None
    source: str  # file name or source topic
    partition: int  # 0 for a file
    offset: int  # 0-based line number, or the source offset
    timestamp: float  # Kafka timestamp (Unix seconds); 0 for a file line
    end: int = 0  # for a file line: uncompressed byte offset just after it


Cursor = dict[str, int]


class Source(Protocol):
    description: str
    identity: dict
    digest: str
    total_units: float | None
    units_done: float

    def initial_cursor(self) -> Cursor: ...

    def records(self, start: Cursor) -> Iterator[Record]: ...

    def window(self, start: Cursor, end: Cursor) -> Iterator[Record]: ...

    def advance(self, cursor: Cursor, records: list[Record]) -> Cursor: ...

    def final_cursor(self) -> Cursor: ...



def pseudo_topic(source: str, digest: str, stream: str) -> str:
    return f"replay:{source}@{digest}/{stream}"

