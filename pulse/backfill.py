"""`pulse backfill`: recompute window tables for a period from the raw tables, inside ClickHouse.

The recomputation is the worker's own (`sinks.windows.WINDOW_SPECS[...].recompute_sql`: the full
aggregate of the deduplicated raw rows of each minute and province), run hour by hour. Each hour's
recomputed rows are compared with the stored ones read with FINAL (measures and `version`):

- `--verify` only reports the differences (missing, extra, different windows);
- otherwise windows that are missing are inserted, and windows that differ are deleted and inserted
  again (deleting first also beats a bad row that carries a higher `version`). Windows that have no raw
  events any more are kept unless `--prune` (the raw data may have been dropped on purpose).

Only differing windows are written, so a backfill is idempotent: running it again writes nothing.
On a ClickHouse cluster (`--cluster NAME`) reads and inserts go through the Distributed tables (plain
names) and deletes to `<table>_local ON CLUSTER NAME` (sinks/cluster.py); the schema must have been
applied with `pulse migrate --cluster NAME` first, as single-node DDL is never run there.
Run it for periods the worker is no longer writing; a window the worker updates at the same moment
is rewritten by the worker's next flush anyway.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from clickhouse_connect.driver.client import Client

from pulse.errors import PulseUsageError
from pulse.progress import Tracker, interactive
from pulse.settings import Settings
from pulse.store import open_warehouse
from sinks.cluster import local_table_on_cluster
from sinks.schema import migrate
from sinks.windows import WINDOW_SPECS, WindowSpec, window_bounds

SPECS_BY_TABLE: dict[str, WindowSpec] = {spec.table: spec for spec in WINDOW_SPECS.values()}
CHUNK_S = 3600  # recompute an hour of windows at a time
LEASE_HOLD_S = 2.0  # give the embedded store back this often so a worker can flush in between
EXAMPLES = 20


@dataclass
class BackfillOptions:
    tables: tuple[str, ...]
    since: datetime
    until: datetime
    provinces: tuple[str, ...] = ()
    verify: bool = False
    prune: bool = False
    quiet: bool = True
    cluster: str | None = None  # ClickHouse cluster name: deletes go to the local tables ON CLUSTER


class BackfillClusterError(PulseUsageError):
    """`--cluster` asked of the embedded chDB store, which is one node."""


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def resolve_tables(names: tuple[str, ...]) -> list[WindowSpec]:
    if "all" in names:
        return list(SPECS_BY_TABLE.values())
    unknown = [name for name in names if name not in SPECS_BY_TABLE]
    if unknown:
        raise PulseUsageError(f"unknown window table(s) {', '.join(unknown)}; known: {', '.join(SPECS_BY_TABLE)}, all")
    return [SPECS_BY_TABLE[name] for name in dict.fromkeys(names)]


def resolve_provinces(codes: tuple[str, ...]) -> list[str]:
    from schemas.provinces import UnknownProvince, current_code

    try:
        return sorted({current_code(code.strip()) for code in codes})
    except UnknownProvince as error:
        raise PulseUsageError(str(error)) from None


def _string_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def delete_windows_sql(database: str, table: str, doomed: list[tuple[datetime, str]],
                       cluster: str | None = None) -> str:
    """The lightweight DELETE of the windows `doomed` ((window start, province code) pairs).

    The values are written in as literals, so that the statement each node takes from the distributed DDL
    queue is complete in itself. On a cluster it targets the local tables on every node: a Distributed
    table holds no rows and refuses `DELETE`."""
    target = f"{database}.{table}" if cluster is None else local_table_on_cluster(database, table, cluster)
    starts = ", ".join(f"toDateTime({start}, 'UTC')" for start in sorted({int(s.timestamp()) for s, _ in doomed}))
    keys = ", ".join(_string_literal(f"{int(start.timestamp())}/{code}") for start, code in sorted(set(doomed)))
    return (f"DELETE FROM {target} WHERE window_start IN ({starts}) "
            f"AND concat(toString(toUnixTimestamp(window_start)), '/', province_code) IN ({keys})")


def minute_chunks(since: datetime, until: datetime) -> list[list[int]]:
    """Window starts (Unix minutes) with since <= start < until, grouped by hour."""
    low, high = since.timestamp(), until.timestamp()
    if high <= low:
        raise PulseUsageError("--until must be later than --since")
    first = int(-(-low // 60) * 60)
    grouped: dict[int, list[int]] = defaultdict(list)
    for start in range(first, int(-(-high // 60) * 60), 60):
        if start < high:
            grouped[start // CHUNK_S].append(start)
    return [grouped[hour] for hour in sorted(grouped)]


class _Table:
    """Per-table counts and the chunk-level compare/repair."""

    def __init__(self, spec: WindowSpec, database: str, provinces: list[str], cluster: str | None = None) -> None:
        self.spec = spec
        self.db = database
        self.provinces = provinces
        self.cluster = cluster
        self.counts = {"windows": 0, "missing": 0, "extra": 0, "different": 0, "inserted": 0, "deleted": 0}

    def _where_province(self) -> str:
        return " AND province_code IN {provinces:Array(String)}" if self.provinces else ""

    def recomputed(self, client: Client, starts: list[int]) -> dict[tuple, tuple]:
        params = window_bounds(set(starts))
        sql = self.spec.recompute_sql(self.db)
        if self.provinces:
            sql = f"SELECT * FROM ({sql}) WHERE 1{self._where_province()}"
            params["provinces"] = self.provinces
        rows = client.query(sql, parameters=params).result_rows
        return {(_as_utc(start), code): tuple(rest) for start, code, *rest in rows}

    def stored(self, client: Client, starts: list[int]) -> dict[tuple, tuple]:
        params = window_bounds(set(starts))
        columns = ", ".join(self.spec.columns)
        sql = (f"SELECT {columns} FROM {self.db}.{self.spec.table} FINAL "
               f"WHERE window_start IN {{starts:Array(DateTime('UTC'))}}{self._where_province()}")
        if self.provinces:
            params["provinces"] = self.provinces
        rows = client.query(sql, parameters=params).result_rows
        return {(_as_utc(start), code): tuple(rest) for start, code, *rest in rows}

    def active_hours(self, client: Client, since: datetime, until: datetime) -> set[int]:
        """Hours (Unix seconds) in which the raw table or the window table has anything at all."""
        params = {"lo": since, "hi": until}
        raw = client.query(
            f"SELECT DISTINCT toUnixTimestamp(toStartOfHour(event_time)) FROM {self.db}.{self.spec.source} "
            "WHERE event_time >= {lo:DateTime64(3, 'UTC')} AND event_time < {hi:DateTime64(3, 'UTC')}",
            parameters=params).result_rows
        windows = client.query(
            f"SELECT DISTINCT toUnixTimestamp(toStartOfHour(window_start)) FROM {self.db}.{self.spec.table} "
            "WHERE window_start >= {lo:DateTime64(3, 'UTC')} AND window_start < {hi:DateTime64(3, 'UTC')}",
            parameters=params).result_rows
        return {row[0] for row in raw} | {row[0] for row in windows}

    def run(self, client: Client, starts: list[int], *, verify: bool, prune: bool, examples: list) -> int:
        fresh, current = self.recomputed(client, starts), self.stored(client, starts)
        missing = [key for key in fresh if key not in current]
        extra = [key for key in current if key not in fresh]
        different = [key for key in fresh if key in current and fresh[key] != current[key]]
        self.counts["windows"] += len(fresh.keys() | current.keys())
        self.counts["missing"] += len(missing)
        self.counts["extra"] += len(extra)
        self.counts["different"] += len(different)
        names = self.spec.columns[2:]
        for kind, keys in (("different", different), ("missing", missing), ("extra", extra)):
            for key in keys[: max(0, EXAMPLES - len(examples))]:
                examples.append({
                    "table": self.spec.table, "window_start": key[0].isoformat(), "province_code": key[1],
                    "kind": kind,
                    "stored": dict(zip(names, current[key])) if key in current else None,
                    "recomputed": dict(zip(names, fresh[key])) if key in fresh else None,
                })
        if verify:
            return len(fresh)
        doomed = different + (extra if prune else [])
        if doomed:
            client.command(delete_windows_sql(self.db, self.spec.table, doomed, self.cluster))
            self.counts["deleted"] += len(doomed)
        rows = [[*key, *fresh[key]] for key in sorted(missing + different)]
        if rows:
            client.insert(f"{self.db}.{self.spec.table}", rows, column_names=self.spec.columns)
            self.counts["inserted"] += len(rows)
        return len(fresh)


def run_backfill(settings: Settings, options: BackfillOptions) -> dict[str, object]:
    started = time.monotonic()
    specs = resolve_tables(options.tables)
    provinces = resolve_provinces(options.provinces)
    chunks = minute_chunks(options.since, options.until)
    warehouse = open_warehouse(settings, keep_open=settings.chdb_keep_open)
    if options.cluster and warehouse.embedded:
        warehouse.close()
        raise BackfillClusterError("--cluster needs a ClickHouse server (PULSE_CLICKHOUSE_URL=http[s]://...); "
                                   "the embedded chDB store is a single node")
    tables = [_Table(spec, warehouse.database, provinces, options.cluster) for spec in specs]
    examples: list[dict] = []
    try:
        with Tracker("backfill " + ",".join(spec.table for spec in specs), None,
                     enabled=interactive(options.quiet), unit="windows") as bar:
            work: list[tuple[_Table, list[int]]] = []
            done = 0
            with warehouse.lease() as client:
                if not options.cluster:  # a cluster's schema comes from `pulse migrate --cluster` only
                    migrate(client, warehouse.database)
                for table in tables:  # hours with neither raw events nor windows need no work
                    active = table.active_hours(client, options.since, options.until)
                    work += [(table, starts) for starts in chunks if starts[0] // CHUNK_S * CHUNK_S in active]
            bar.update(total=len(work))
            while done < len(work):
                with warehouse.lease() as client:
                    held = time.monotonic()
                    while done < len(work) and time.monotonic() - held < LEASE_HOLD_S:
                        table, starts = work[done]
                        windows = table.run(client, starts, verify=options.verify, prune=options.prune,
                                            examples=examples)
                        done += 1
                        bar.update(events=windows, completed=done, position=starts[-1] + 60)
    finally:
        warehouse.close()
    per_table = {table.spec.table: table.counts for table in tables}
    differences = sum(c["missing"] + c["different"] + c["extra"] for c in per_table.values())
    report: dict[str, object] = {
        "mode": "verify" if options.verify else "repair",
        "since": options.since.astimezone(timezone.utc).isoformat(),
        "until": options.until.astimezone(timezone.utc).isoformat(),
        "provinces": provinces or "all",
        "tables": per_table,
        "differences": differences,
        "examples": examples,
        "seconds": round(time.monotonic() - started, 2),
    }
    if not options.verify:
        report["extra_kept"] = 0 if options.prune else sum(c["extra"] for c in per_table.values())
    return report
