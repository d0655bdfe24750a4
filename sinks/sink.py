"""The ClickHouse sink: raw rows, dead letters, recomputed window rows and stream progress per transaction."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from uuid import UUID

import orjson
from clickhouse_connect.driver.client import Client

from schemas.errors import PulseError
from schemas.events import DeadLetter, Event
from schemas.fast_events import DecodedEvent, event_fields
from sinks.client import Warehouse
from sinks.schema import migrate
from sinks.windows import WINDOW_SPECS, window_bounds

log = logging.getLogger(__name__)

# Stream name -> raw table.
RAW_TABLES = {"payments": "payments", "dossiers": "dossier_events", "identity": "id_activations"}
_JSON_INSERT_SETTINGS = {"date_time_input_format": "best_effort", "input_format_skip_unknown_fields": 1}
_DEAD_LETTER_COLUMNS = ["topic", "partition", "offset", "key", "reason", "error", "raw"]
_EVENT_INDEX_COLUMNS = ["stream", "event_id", "fingerprint", "topic", "partition", "offset", "event_time",
                        "province_code"]


def _event_line(event: DecodedEvent) -> bytes:
    fields = event_fields(event)
    if fields["type"] == "payment":
        # The full account number never reaches storage: keep the masked form only.
        return orjson.dumps(fields | {"qr_payload": None, "payee_account_masked": event.account_masked})  # type: ignore[union-attr]
    return orjson.dumps(fields)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


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
            parameters={"stream": stream, "ids": event_ids},
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
                self._insert_json(RAW_TABLES[stream], b"\n".join(map(_event_line, events)))
                # After the raw rows: a crash between the two leaves events stored but not indexed, which the
                # retried batch stores again (same raw key, collapsing) and indexes; never indexed, not stored.
                self._insert_index(stream, events, batch.copies[stream])
        if batch.dead_letters:
            self._insert_dead_letters(batch.dead_letters)
        window_rows = [row for stream, minutes in batch.windows.items() if minutes
                       for row in self._recompute(RAW_TABLES[stream], minutes)]
        self._insert_progress(batch.progress)
        return window_rows

    def _insert_json(self, table: str, lines: bytes) -> None:
        columns = _table_columns(self.client, self.db, table)
        self.client.raw_insert(f"{self.db}.{table}", columns, insert_block=lines, settings=_JSON_INSERT_SETTINGS,
                               fmt="JSONEachRow")

    def _insert_index(self, stream: str, events: list[Event], copies: list) -> None:
        # As JSON lines, like the raw rows: building typed Python rows for the client costs several times more.
        lines = b"\n".join([orjson.dumps({
            "stream": stream, "event_id": event.event_id, "fingerprint": copy.fingerprint, "topic": copy.topic,
            "partition": copy.partition, "offset": copy.offset, "event_time": event.event_time,
            "province_code": event.province_code,
        }) for event, copy in zip(events, copies)])
        self.client.raw_insert(f"{self.db}.event_index", _EVENT_INDEX_COLUMNS, insert_block=lines,
                               settings=_JSON_INSERT_SETTINGS, fmt="JSONEachRow")

    def _insert_dead_letters(self, records: list[DeadLetter]) -> None:
        rows = [[r.topic, r.partition, r.offset, r.key, r.reason, r.error, r.raw] for r in records]
        self.client.insert(f"{self.db}.dead_letters", rows, column_names=_DEAD_LETTER_COLUMNS)

    def _recompute(self, source: str, minutes: set[int]) -> list[dict]:
        spec = WINDOW_SPECS[source]
        result = self.client.query(spec.recompute_sql(self.db), parameters=window_bounds(minutes))
        rows = [(_as_utc(row[0]), *row[1:]) for row in result.result_rows]
        if rows:
            self.client.insert(f"{self.db}.{spec.table}", rows, column_names=spec.columns)
        names = spec.columns
        return [dict(zip(names, row), table=spec.table) for row in rows]

    def _insert_progress(self, progress) -> None:
        rows = [[topic, partition, state.offset, _utc(state.watermark), state.leaders]
                for (topic, partition), state in progress.items() if state.offset >= 0]
        if rows:
            self.client.insert(f"{self.db}.stream_offsets", rows,
                               column_names=["topic", "partition", "offset", "watermark", "watermark_leaders"])


_COLUMNS_CACHE: dict[tuple[str, str], list[str]] = {}


def _table_columns(client: Client, database: str, table: str) -> list[str]:
    """Insertable columns (plain ones, and those with a DEFAULT that an event field fills; an omitted field,
    such as ingested_at, takes the column's DEFAULT), cached: the schema changes only by migration.
    Columns added by migration carry a DEFAULT so rows stored before it read the field's default."""
    key = (database, table)
    if key not in _COLUMNS_CACHE:
        rows = client.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
            "AND default_kind IN ('', 'DEFAULT') ORDER BY position",
            parameters={"db": database, "t": table},
        ).result_rows
        _COLUMNS_CACHE[key] = [row[0] for row in rows]
    return _COLUMNS_CACHE[key]


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

    def close(self) -> None:
        self.warehouse.close()
