"""The ClickHouse sink: raw rows, dead letters, recomputed window rows and stream progress per transaction."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import cache
from itertools import repeat
from operator import attrgetter
from pathlib import Path
from uuid import UUID

import numpy as np
from clickhouse_connect.driver.client import Client

from schemas.errors import PulseError
from schemas.events import EVENT_MODELS, DeadLetter
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


# Every insert states its columns' types as sent (see _wire), and the store converts them to the table's types
# (a String column into LowCardinality(String) or UUID). On by default since ClickHouse 23.3; said explicitly so
# that a server configured otherwise still converts rather than rejects.
_INSERT_SETTINGS = {"input_format_native_allow_types_conversion": 1}
# For the raw rows and event_index rows: a batch stores each event_id once (a second copy in the same batch is a
# duplicate or a conflict; only the very same message read twice is stored twice, as identical rows), so
# ReplacingMergeTree's collapse of the inserted block finds nothing that FINAL and merges would not collapse anyway,
# as they do for a batch replayed after a crash. Skipping that pass saved ~0.5 us an event (payments, chDB).
_UNIQUE_KEYS_INSERT_SETTINGS = _INSERT_SETTINGS | {"optimize_on_insert": 0}
_UUID_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])  # the text's positions that are not dashes
_MILLIS_TYPE = "DateTime64(3, 'UTC')"
_LOOKUP_TABLE = "pulse_lookup_ids"  # a temporary table (of the client's session), so no database


def _uuid_texts(ids: list[UUID]) -> list[bytes]:
    """The canonical text of each UUID (what str() gives), for the whole batch at once: str() per UUID costs
    0.65-0.95 us, this 0.15-0.25 (one join of the 16-byte values, one hex(), the dashes put in by numpy)."""
    raw = b"".join(map(int.to_bytes, map(attrgetter("int"), ids), repeat(16), repeat("big")))
    text = np.full((len(ids), 36), ord("-"), np.uint8)
    text[:, _UUID_DIGITS] = np.frombuffer(raw.hex().encode(), np.uint8).reshape(len(ids), 32)
    return text.view("S36").ravel().tolist()


def _millis(moments: list[datetime]) -> list[int]:
    """Milliseconds since the epoch of aware instants, truncated as DateTime64(3) stores them, for the whole batch
    at once (the client's own conversion is a Python function per value, about 0.6 us). The whole seconds come
    from timestamp(), a float far more exact than half a second, the fraction from the exact microsecond field
    (which UTC and the local time share: a UTC offset has no microseconds in practice; the client assumes the
    same)."""
    count = len(moments)
    seconds = np.fromiter(map(datetime.timestamp, moments), np.float64, count)
    micros = np.fromiter(map(attrgetter("microsecond"), moments), np.int64, count)
    return (np.rint(seconds - micros / 1e6).astype(np.int64) * 1000 + micros // 1000).tolist()


def _wire(values: list, column_type: str, may_be_none: bool) -> tuple[list, str]:
    """One column's Python values in the form the Native writer turns into bytes in C, and the type they are sent
    as. The client's writers for UUIDs, instants and LowCardinality dictionaries are Python loops per value
    (together ~3 us per payment); the store converts instead: UUIDs go as their text (into String or UUID
    columns), LowCardinality(String) as String, instants as integer milliseconds. None (an absent optional field)
    becomes the type's zero in a column that is not Nullable, as the JSON rows stored before (0 or '')."""
    base = column_type[len("LowCardinality("):-1] if column_type.startswith("LowCardinality(") else column_type
    if not values:
        return values, base
    if may_be_none and not base.startswith("Nullable(") and None in values:
        zero = "" if base == "String" else False if base == "Bool" else 0
        values = [zero if value is None else value for value in values]
    if isinstance(values[0], UUID):
        return _uuid_texts(values), "String"
    if base == _MILLIS_TYPE and isinstance(values[0], datetime):
        return _millis(values), base
    return values, base


class _EventColumns:
    """A batch's values per attribute, each read (one C-level attrgetter pass) and put in its wire form once, for
    the raw rows and the event_index rows alike."""

    def __init__(self, items: list) -> None:
        self.items = items
        self._values: dict[str, list] = {}
        self._wired: dict[tuple[str, str], tuple[list, str]] = {}

    def wired(self, attribute: str, column_type: str, may_be_none: bool = False) -> tuple[list, str]:
        if attribute not in self._values:
            self._values[attribute] = list(map(attrgetter(attribute), self.items))
        values = self._values[attribute]
        # UUIDs go as the same text into a String column (raw rows) and a UUID column (event_index): one key.
        key = (attribute, "UUID" if values and isinstance(values[0], UUID) else column_type)
        if key not in self._wired:
            self._wired[key] = _wire(values, column_type, may_be_none)
        return self._wired[key]


def insert_columns(client: Client, table: str, names: list[str], type_names: list[str], columns: list[list],
                   settings: dict[str, int]) -> None:
    """A column-oriented Native insert whose columns are freed as soon as it returns.

    clickhouse-connect's InsertContext keeps a bound method of itself (`_next_block_data`), a reference cycle,
    so the columns it holds would wait for the cyclic garbage collector instead of going when the insert ends.
    The worker makes that collector rare (pulse.gc_tuning): ~25 batches' columns were kept alive (worker RSS
    716 MB anonymous at `pulse bench --events 1000000` instead of ~280). Taking the method off breaks the cycle;
    tests/sinks/test_no_cyclic_garbage.py fails if a batch leaves one behind."""
    context = client.create_insert_context(table, column_names=names, column_type_names=type_names,
                                           column_oriented=True, settings=settings, data=columns)
    try:
        client.insert(context=context)
    finally:
        vars(context).pop("_next_block_data", None)


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
        copies (two workers on one event_id at once), the first stored is the one that counts.

        The ids reach the store as inserted data, in a temporary table of this client's session, not as a query
        parameter: ClickHouse parses a parameter's text at ~2.3 us an id, half of the whole lookup at 20,000 ids,
        while an insert takes them in bulk. `prefer_global_in_and_join`: on a cluster (event_index a Distributed
        table) the IN becomes GLOBAL IN, so the set travels with the query to every shard (the temporary table
        exists only on the node this client talks to); on one node the IN stays local (GLOBAL would copy the set
        once more, ~20 ms a lookup)."""
        from streams.pipeline import CountedCopy  # the protocol's value type; imported lazily to keep layers apart

        if not event_ids:
            return {}
        self._stage_lookup_ids(event_ids)
        rows = self.client.query(
            f"SELECT event_id, argMin(tuple(fingerprint, topic, partition, offset), ingested_at) "
            f"FROM {self.db}.event_index "
            f"WHERE stream = {{stream:String}} AND event_id IN (SELECT event_id FROM {_LOOKUP_TABLE}) "
            f"GROUP BY event_id",
            parameters={"stream": stream}, settings={"prefer_global_in_and_join": 1},
        ).result_rows
        return {key: CountedCopy(*copy) for key, copy in rows}

    def _stage_lookup_ids(self, event_ids: list[UUID]) -> None:
        """This lookup's ids, alone, in the session's temporary table. Created when missing, not once per client:
        a server drops a session's temporary tables when the session times out (an idle worker)."""
        self.client.command(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_LOOKUP_TABLE} (event_id UUID) ENGINE = Memory")
        self.client.command(f"TRUNCATE TABLE {_LOOKUP_TABLE}")
        insert_columns(self.client, _LOOKUP_TABLE, ["event_id"], ["String"], [_uuid_texts(event_ids)],
                       _INSERT_SETTINGS)

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
                columns = _EventColumns(events)  # read and converted once for both inserts
                self._insert_raw(stream, columns)
                # After the raw rows: a crash between the two leaves events stored but not indexed, which the
                # retried batch stores again (same raw key, collapsing) and indexes; never indexed, not stored.
                self._insert_index(stream, columns, batch.copies[stream])
        if batch.dead_letters:
            self._insert_dead_letters(batch.dead_letters)
        window_rows = [row for stream, minutes in batch.windows.items() if minutes
                       for row in self._recompute(RAW_TABLES[stream], minutes)]
        self._insert_progress(batch.progress)
        return window_rows

    def _insert_raw(self, stream: str, columns: _EventColumns) -> None:
        """Column by column, in ClickHouse's Native format: the event attributes read once, no text to build or
        parse. Columns no event attribute fills (ingested_at) are left out and take their DEFAULT."""
        table = RAW_TABLES[stream]
        sources = _raw_sources(stream)
        optional = _optional_fields(stream)
        types = _column_types(self.client, self.db, table)
        names = [name for name in types if name in sources]
        self._insert_wired(table, names, [columns.wired(sources[name], types[name], sources[name] in optional)
                                          for name in names], _UNIQUE_KEYS_INSERT_SETTINGS)

    def _insert_index(self, stream: str, columns: _EventColumns, copies: list) -> None:
        types = _column_types(self.client, self.db, "event_index")
        origins = _EventColumns(copies)
        wired = {name: columns.wired(name, types[name]) for name in ("event_id", "event_time", "province_code")}
        wired |= {name: origins.wired(name, types[name]) for name in ("fingerprint", "topic", "partition", "offset")}
        wired["stream"] = _wire([stream] * len(copies), types["stream"], False)
        self._insert_wired("event_index", _EVENT_INDEX_COLUMNS, [wired[name] for name in _EVENT_INDEX_COLUMNS],
                           _UNIQUE_KEYS_INSERT_SETTINGS)

    def _insert_columns(self, table: str, names: list[str], columns: list[list],
                        may_be_none: list[bool] | None = None) -> None:
        """A column-oriented Native insert of Python values. `may_be_none`: per column, whether None can occur
        (looked for only there: a scan for None compares every value)."""
        types = _column_types(self.client, self.db, table)
        nullable = may_be_none or [False] * len(names)
        self._insert_wired(table, names, [_wire(values, types[name], none)
                                          for name, values, none in zip(names, columns, nullable)])

    def _insert_wired(self, table: str, names: list[str], wired: list[tuple[list, str]],
                      settings: dict[str, int] = _INSERT_SETTINGS) -> None:
        """Columns already in their wire form (_wire), with the types they are sent as: the client would otherwise
        ask for the table's types with a DESCRIBE before every insert."""
        insert_columns(self.client, f"{self.db}.{table}", names, [kind for _, kind in wired],
                       [values for values, _ in wired], settings)

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
