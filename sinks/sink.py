"""The ClickHouse sink: raw rows, dead letters, recomputed window rows and stream progress per transaction."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import cache
from operator import attrgetter
from pathlib import Path
from uuid import UUID

from clickhouse_connect.driver.client import Client

from schemas.errors import PulseError
from schemas.events import EVENT_MODELS, DeadLetter, Event
from sinks.client import Warehouse
from sinks.schema import migrate
from sinks.windows import WINDOW_SPECS, window_bounds

log = logging.getLogger(__name__)

# Stream name -> raw table.
RAW_TABLES = {"payments": "payments", "dossiers": "dossier_events", "identity": "id_activations"}
_DEAD_LETTER_COLUMNS = ["topic", "partition", "offset", "key", "reason", "error", "raw"]
_EVENT_INDEX_COLUMNS = ["stream", "event_id", "fingerprint", "topic", "partition", "offset", "event_time",
                        "province_code"]
# Raw column -> the event attribute that fills it, where the two names differ. The full account number
# (`qr_payload`) has no column at all: only its masked form reaches storage (README, "Privacy").
_RENAMED_SOURCES = {"payments": {"payee_account_masked": "account_masked"}}


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@cache
def _raw_sources(stream: str) -> dict[str, str]:
    """Raw column name -> event attribute, for every attribute the stream's events carry (by the contract:
    the model's field names, plus the renamed ones)."""
    renamed = _RENAMED_SOURCES.get(stream, {})
    return {name: name for name in EVENT_MODELS[stream].model_fields} | renamed


@cache
def _optional_fields(stream: str) -> frozenset[str]:
    """The fields an event of this stream may leave as None (such as `rating`, set on `rated` only)."""
    return frozenset(name for name, field in EVENT_MODELS[stream].model_fields.items()
                     if not field.is_required() and field.default is None)


def _columns_of(items: list, attributes: list[str]) -> list[list]:
    """The values of these attributes, one list per attribute, each read by a C-level attrgetter: cheaper than
    a Python loop, and cheaper than one tuple per item (allocating those wakes the garbage collector, which
    then walks the whole batch)."""
    return [list(map(attrgetter(attribute), items)) for attribute in attributes]


def _fit(values: list, column_type: str, may_be_none: bool) -> list:
    """One column's Python values as the Native writer takes them: UUIDs as text in String columns, and None
    (an absent optional field) as the type's zero in a column that is not Nullable, which is what the JSON rows
    stored before (null read as the column's default, 0 or '' for these columns)."""
    if not values:
        return values
    base = column_type[len("LowCardinality("):-1] if column_type.startswith("LowCardinality(") else column_type
    if base == "String" and not isinstance(values[0], str):
        values = [value if value is None else str(value) for value in values]
    if may_be_none and not base.startswith("Nullable(") and None in values:
        zero = "" if base == "String" else False if base == "Bool" else 0
        values = [zero if value is None else value for value in values]
    return values


class _UuidArray:
    """A batch's event ids as the text of an Array(UUID) query parameter, built in one join. The client's
    generic formatting of a list of UUIDs costs about 3 us an id (a recursive call and type checks each),
    more than the lookup itself; a UUID's text is hex digits and dashes only, so it needs no escaping.
    The client passes an object of a type it does not know through as str(object)."""

    __slots__ = ("text",)

    def __init__(self, ids: list[UUID]) -> None:
        self.text = "['" + "','".join(map(str, ids)) + "']" if ids else "[]"

    def __str__(self) -> str:
        return self.text


class Transaction:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = database

    def load_progress(self, partitions: Iterable[tuple[str, int]]):
        from streams.pipeline import Progress  # the protocol's value type; imported lazily to keep layers apart

        topics = sorted({topic for topic, _ in partitions})
        if not topics:
            return {}
        rows = self.client.query(
            f"SELECT topic, partition, offset, toUnixTimestamp64Milli(watermark), watermark_leaders "
            f"FROM {self.db}.stream_offsets FINAL WHERE topic IN {{topics:Array(String)}}",
            parameters={"topics": topics},
        ).result_rows
        return {(topic, partition): Progress(offset, millis / 1000, list(leaders))
                for topic, partition, offset, millis, leaders in rows}

    def counted_copies(self, stream: str, event_ids: list[UUID]):
        """One query per batch and stream, on event_index (sorted by event_id). Should a race have stored two
        copies (two workers on one event_id at once), the first stored is the one that counts."""
        from streams.pipeline import CountedCopy  # the protocol's value type; imported lazily to keep layers apart

        rows = self.client.query(
            f"SELECT event_id, argMin(tuple(fingerprint, topic, partition, offset), ingested_at) "
            f"FROM {self.db}.event_index "
            f"WHERE stream = {{stream:String}} AND event_id IN {{ids:Array(UUID)}} GROUP BY event_id",
            parameters={"stream": stream, "ids": _UuidArray(event_ids)},
        ).result_rows
        return {key: CountedCopy(*copy) for key, copy in rows}

    def stored_copies(self, stream: str, event_ids: list[UUID]) -> dict[UUID, str]:
        """Only for conflicts: the raw rows, found through the minutes event_index gives (the raw key's prefix)."""
        table = RAW_TABLES[stream]
        rows = self.client.query(
            f"SELECT event_id, formatRowNoNewline('JSONEachRow', *) FROM {self.db}.{table} FINAL "
            f"WHERE toStartOfMinute(event_time) IN (SELECT toStartOfMinute(event_time) FROM {self.db}.event_index "
            f"WHERE stream = {{stream:String}} AND event_id IN {{ids:Array(UUID)}}) "
            f"AND event_id IN {{texts:Array(String)}}",
            parameters={"stream": stream, "ids": event_ids, "texts": [str(key) for key in event_ids]},
        ).result_rows
        return {UUID(key): text for key, text in rows}

    def write(self, batch) -> list[dict]:
        for stream, events in batch.events.items():
            if events:
                self._insert_raw(stream, events)
                # After the raw rows: a crash between the two leaves events stored but not indexed, which the
                # retried batch stores again (same raw key, collapsing) and indexes; never indexed, not stored.
                self._insert_index(stream, events, batch.copies[stream])
        if batch.dead_letters:
            self._insert_dead_letters(batch.dead_letters)
        window_rows = [row for stream, minutes in batch.windows.items() if minutes
                       for row in self._recompute(RAW_TABLES[stream], minutes)]
        self._insert_progress(batch.progress)
        return window_rows

    def _insert_raw(self, stream: str, events: list[Event]) -> None:
        """Column by column, in ClickHouse's Native format: the event attributes read once, no text to build or
        parse. Columns no event attribute fills (ingested_at) are left out and take their DEFAULT."""
        table = RAW_TABLES[stream]
        sources = _raw_sources(stream)
        names = [name for name in _column_types(self.client, self.db, table) if name in sources]
        columns = _columns_of(events, [sources[name] for name in names])
        optional = _optional_fields(stream)
        self._insert_columns(table, names, columns, [sources[name] in optional for name in names])

    def _insert_index(self, stream: str, events: list[Event], copies: list) -> None:
        ids, times, provinces = _columns_of(events, ["event_id", "event_time", "province_code"])
        origins = _columns_of(copies, ["fingerprint", "topic", "partition", "offset"])
        columns = [[stream] * len(events), ids, *origins, times, provinces]  # _EVENT_INDEX_COLUMNS' order
        self._insert_columns("event_index", _EVENT_INDEX_COLUMNS, columns)

    def _insert_columns(self, table: str, names: list[str], columns: list[list],
                        may_be_none: list[bool] | None = None) -> None:
        """A column-oriented Native insert with the column types known in advance (the client would otherwise
        ask for them with a DESCRIBE before every insert). `may_be_none`: per column, whether None can occur
        (looked for only there: a scan for None compares every value)."""
        types = _column_types(self.client, self.db, table)
        type_names = [types[name] for name in names]
        nullable = may_be_none or [False] * len(names)
        self.client.insert(f"{self.db}.{table}",
                           [_fit(values, kind, none) for values, kind, none in zip(columns, type_names, nullable)],
                           column_names=names, column_type_names=type_names, column_oriented=True)

    def _insert_dead_letters(self, records: list[DeadLetter]) -> None:
        self._insert_columns("dead_letters", _DEAD_LETTER_COLUMNS, _columns_of(records, _DEAD_LETTER_COLUMNS))

    def _recompute(self, source: str, minutes: set[int]) -> list[dict]:
        spec = WINDOW_SPECS[source]
        result = self.client.query(spec.recompute_sql(self.db), parameters=window_bounds(minutes))
        columns = [list(column) for column in result.result_columns] if result.row_count else []
        if not columns:
            return []
        columns[0] = [_as_utc(start) for start in columns[0]]  # one per window row, not per event
        self._insert_columns(spec.table, spec.columns, columns)
        return [dict(zip(spec.columns, row), table=spec.table) for row in zip(*columns)]

    def _insert_progress(self, progress) -> None:
        rows = [(topic, partition, state.offset, _utc(state.watermark), state.leaders)
                for (topic, partition), state in progress.items() if state.offset >= 0]
        if rows:
            self._insert_columns("stream_offsets", ["topic", "partition", "offset", "watermark", "watermark_leaders"],
                                 [list(column) for column in zip(*rows)])


_COLUMNS_CACHE: dict[tuple[str, str], dict[str, str]] = {}


def _column_types(client: Client, database: str, table: str) -> dict[str, str]:
    """Insertable columns (plain ones, and those with a DEFAULT) -> their type, in table order. Cached: the
    schema changes only by migration, and every migration adds a column with a DEFAULT, so an insert that
    leaves a new column out still works. An omitted column (such as ingested_at) takes its DEFAULT."""
    key = (database, table)
    if key not in _COLUMNS_CACHE:
        rows = client.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
            "AND default_kind IN ('', 'DEFAULT') ORDER BY position",
            parameters={"db": database, "t": table},
        ).result_rows
        _COLUMNS_CACHE[key] = dict(rows)
    return _COLUMNS_CACHE[key]


def _load_column_types(client: Client, database: str) -> None:
    """What `_column_types` caches, for every table of `database` in one query: done at start (off the first
    batch's path, which would otherwise ask once per table)."""
    rows = client.query(
        "SELECT table, name, type FROM system.columns WHERE database = {db:String} "
        "AND default_kind IN ('', 'DEFAULT') ORDER BY table, position",
        parameters={"db": database},
    ).result_rows
    found: dict[tuple[str, str], dict[str, str]] = {}
    for table, name, kind in rows:
        found.setdefault((database, table), {})[name] = kind
    _COLUMNS_CACHE.update(found)


class SinkUnavailable(PulseError, ConnectionError):
    """The sink cannot take writes now (raised for real outages by the client, or injected for drills)."""


class ClickHouseSink:
    """Implements streams.pipeline.Sink over a Warehouse.

    `outage_flag`: while this file exists every transaction fails, as if ClickHouse were down. It lets
    operators and tests rehearse an outage (backpressure, retries, no loss) against the real store.
    """

    def __init__(self, warehouse: Warehouse, outage_flag: Path | None = None) -> None:
        self.warehouse = warehouse
        self.outage_flag = outage_flag
        self._migrated = False

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        if self.outage_flag is not None and self.outage_flag.exists():
            raise SinkUnavailable(f"sink outage drill: {self.outage_flag} exists")
        with self.warehouse.lease() as client:
            if not self._migrated:
                applied = migrate(client, self.warehouse.database)
                if applied:
                    log.info("applied migrations: %s", ", ".join(applied))
                self._migrated = True
            yield Transaction(client, self.warehouse.database)

    def migrate(self) -> list[str]:
        """Apply pending migrations now (the worker does so at start), so that the first transaction need
        not; returns the names of those applied."""
        with self.warehouse.lease() as client:
            applied = migrate(client, self.warehouse.database, batched=self.warehouse.embedded)
            self._migrated = True
            _load_column_types(client, self.warehouse.database)
        return applied

    def close(self) -> None:
        self.warehouse.close()
