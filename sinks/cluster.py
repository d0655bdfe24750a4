"""The schema for a ClickHouse cluster, rendered from the same migration files as the single-node store.

Every table of the migrations becomes two: `<name>_local`, a Replicated*MergeTree on every node (its
ZooKeeper path holds the `{shard}` macro, its replica name the `{replica}` macro), and `<name>` itself, a
Distributed table over the locals. The worker, the dashboards and the views keep using the plain names.

Why it stays exact (docs/scaling.md has the full argument):

- FINAL and ReplacingMergeTree collapse rows only within one shard. Rows that must collapse have the same
  sorting key (ORDER BY), so the sharding key is always a function of the sorting key: `province_code`
  when the sorting key holds it (raw and window tables: the raw rows of a (minute, province) window and the
  window row itself then live on the same shard), otherwise a hash of the whole sorting key. A copy of an
  event lands on the shard of the first copy because it has the same sorting key; a "duplicate" whose
  province differs has a different sorting key and is not collapsed on a single node either.
- A window recomputation reads through the Distributed table right after its raw rows were inserted, so
  an acknowledged insert must be visible on whichever replica the read goes to: `cluster_write_settings`
  makes inserts synchronous (`distributed_foreground_insert`) and wait for every replica of the shard
  (`insert_quorum` = replicas per shard).

Statements the renderer does not know how to place on a cluster raise ClusterRenderError naming the
migration and the statement, rather than being passed through unchanged.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import PulseError
from sinks.schema import LEDGER_DDL, _statements, migration_files

LOCAL_SUFFIX = "_local"
PROVINCE_SHARDING_KEY = "cityHash64(province_code)"
ZOOKEEPER_PATH = "/clickhouse/tables/{shard}/%s/%s"  # {shard}: the server's macro, filled in by ClickHouse
REPLICA_NAME = "{replica}"

# Engines that can be made Replicated by prefixing the name; anything else is refused.
MERGE_TREE_ENGINES = frozenset({
    "MergeTree", "ReplacingMergeTree", "SummingMergeTree", "AggregatingMergeTree",
    "CollapsingMergeTree", "VersionedCollapsingMergeTree", "CoalescingMergeTree",
})
# Engines that collapse rows with equal sorting keys, so those rows must share a shard.
_COLLAPSING = MERGE_TREE_ENGINES - {"MergeTree"}

# ALTER commands that change the columns: applied to the local tables and to the Distributed table,
# which must expose the same columns.
_COLUMN_COMMANDS = ("ADD COLUMN", "DROP COLUMN", "MODIFY COLUMN", "RENAME COLUMN", "COMMENT COLUMN")
# ALTER commands about stored data (TTL, indexes, mutations, settings): local tables only; a Distributed
# table has no data of its own.
_DATA_COMMANDS = (
    "MODIFY TTL", "REMOVE TTL", "MATERIALIZE TTL", "MATERIALIZE COLUMN", "CLEAR COLUMN",
    "ADD INDEX", "DROP INDEX", "MATERIALIZE INDEX", "CLEAR INDEX",
    "ADD PROJECTION", "DROP PROJECTION", "MATERIALIZE PROJECTION", "CLEAR PROJECTION",
    "ADD CONSTRAINT", "DROP CONSTRAINT", "MODIFY SETTING", "RESET SETTING", "MODIFY COMMENT",
    "MODIFY ORDER BY", "DELETE WHERE", "UPDATE",
)
_CLAUSES = ("PARTITION BY", "ORDER BY", "PRIMARY KEY", "SAMPLE BY", "TTL", "SETTINGS", "COMMENT")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = r"(?P<name>[A-Za-z_][\w]*\.[A-Za-z_][\w]*|[A-Za-z_][\w]*)"


class ClusterRenderError(PulseError, ValueError):
    """A migration statement that the cluster renderer cannot place correctly."""


@dataclass(frozen=True)
class ClusterMigration:
    number: int
    name: str
    statements: list[str]


@dataclass(frozen=True)
class ShardedTable:
    """A table of the migrations as the cluster holds it."""

    engine: str
    sorting_key: tuple[str, ...]

    @property
    def by_province(self) -> bool:
        return "province_code" in self.sorting_key

    @property
    def sharding_key(self) -> str:
        if self.by_province:
            return PROVINCE_SHARDING_KEY
        if not self.sorting_key:
            if self.engine in _COLLAPSING:
                raise ClusterRenderError(f"a {self.engine} without a sorting key collapses rows across the whole "
                                         "table; no sharding key keeps that within one shard")
            return "rand()"
        return f"cityHash64({', '.join(self.sorting_key)})"


@dataclass
class _Renderer:
    cluster: str
    database: str
    tables: dict[str, ShardedTable] = field(default_factory=dict)
    views: set[str] = field(default_factory=set)

    def render(self, statement: str) -> list[str]:
        text = _strip_comments(statement).strip().rstrip(";").strip()
        head = " ".join(text.split()[:4]).upper()
        for prefix, method in (
            ("CREATE TABLE", self._create_table),
            ("CREATE MATERIALIZED VIEW", self._create_materialized_view),
            ("CREATE VIEW", self._create_view),
            ("CREATE OR REPLACE VIEW", self._create_view),
            ("ALTER TABLE", self._alter_table),
            ("INSERT INTO", self._insert),
            ("DROP TABLE", self._drop),
            ("DROP VIEW", self._drop),
            ("OPTIMIZE TABLE", self._local_only),
            ("TRUNCATE TABLE", self._local_only),
        ):
            if head.startswith(prefix):
                return method(text)
        raise ClusterRenderError(f"no cluster rendering for this kind of statement: {_abbreviated(text)}")

    # -- names --------------------------------------------------------------------------------------
    def _qualified(self, name: str) -> str:
        return name.replace("`", "") if "." in name else f"{self.database}.{name.replace('`', '')}"

    def _short(self, name: str) -> str:
        return self._qualified(name).split(".", 1)[1]

    def _local(self, name: str) -> str:
        return self._qualified(name) + LOCAL_SUFFIX

    def _known_table(self, name: str, text: str) -> ShardedTable:
        table = self.tables.get(self._qualified(name))
        if table is None:
            raise ClusterRenderError(f"{self._qualified(name)} is not a table created by an earlier migration: "
                                     f"{_abbreviated(text)}")
        return table

    # -- statements ---------------------------------------------------------------------------------
    def _create_table(self, text: str) -> list[str]:
        match = re.match(rf"CREATE\s+TABLE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?{_NAME}\s*", text, re.I)
        if match is None or not text[match.end():].startswith("("):
            raise ClusterRenderError(f"CREATE TABLE without a column list is not supported: {_abbreviated(text)}")
        columns_end = _closing_paren(text, match.end())
        columns = text[match.end():columns_end + 1]
        rest = text[columns_end + 1:].strip()
        engine_match = re.match(r"ENGINE\s*=\s*(?P<engine>\w+)\s*", rest, re.I)
        if engine_match is None:
            raise ClusterRenderError(f"CREATE TABLE needs an explicit ENGINE: {_abbreviated(text)}")
        engine = engine_match.group("engine")
        if engine not in MERGE_TREE_ENGINES:
            raise ClusterRenderError(f"engine {engine} has no Replicated form here; only the MergeTree family "
                                     f"is rendered for a cluster: {_abbreviated(text)}")
        after_engine = rest[engine_match.end():]
        arguments = ""
        if after_engine.startswith("("):
            close = _closing_paren(after_engine, 0)
            arguments = after_engine[1:close].strip()
            after_engine = after_engine[close + 1:].strip()
        table = ShardedTable(engine, _sorting_key(after_engine))
        name = self._qualified(match.group("name"))
        sharding_key = table.sharding_key  # refuses an unshardable table before anything is rendered
        if_not_exists = "IF NOT EXISTS " if match.group("ine") else ""
        local = self._local(name)
        replication = f"'{ZOOKEEPER_PATH % (self.database, self._short(name) + LOCAL_SUFFIX)}', '{REPLICA_NAME}'"
        replicated_arguments = ", ".join(filter(None, (replication, arguments)))
        self.tables[name] = table
        return [
            f"CREATE TABLE {if_not_exists}{local} ON CLUSTER {self.cluster} {columns} "
            f"ENGINE = Replicated{engine}({replicated_arguments}) {after_engine}".rstrip(),
            f"CREATE TABLE {if_not_exists}{name} ON CLUSTER {self.cluster} AS {local} "
            f"ENGINE = Distributed({self.cluster}, {self.database}, {self._short(name)}{LOCAL_SUFFIX}, {sharding_key})",
        ]

    def _create_view(self, text: str) -> list[str]:
        # Plain views are queries: they read the Distributed tables by their usual names on every node.
        match = re.match(rf"CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?{_NAME}\s+", text, re.I)
        if match is None:
            raise ClusterRenderError(f"unreadable CREATE VIEW: {_abbreviated(text)}")
        self.views.add(self._qualified(match.group("name")))
        return [_insert_at(text, match.end("name"), f" ON CLUSTER {self.cluster}")]

    def _create_materialized_view(self, text: str) -> list[str]:
        # A materialized view fires on inserts into the table it selects from. On a cluster it must fire on
        # the local table that receives the rows and write to the local target on the same shard: correct
        # only when source and target are both sharded by province (a target row then depends on rows of
        # its own shard alone).
        match = re.match(rf"CREATE\s+MATERIALIZED\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?{_NAME}\s+"
                         r"TO\s+(?P<target>[\w.`]+)\s+", text, re.I)
        if match is None:
            raise ClusterRenderError("a materialized view needs TO <table> (a table of the migrations) to be "
                                     f"rendered for a cluster: {_abbreviated(text)}")
        target = self._known_table(match.group("target"), text)
        sources = [name for name in self.tables if re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)
                   and name != self._qualified(match.group("target"))]
        if not sources or not target.by_province or not all(self.tables[s].by_province for s in sources):
            raise ClusterRenderError("a materialized view is rendered only between tables that are both sharded "
                                     f"by province_code: {_abbreviated(text)}")
        self.views.add(self._qualified(match.group("name")))
        body = text[match.end("target"):]
        for name in [*sources, self._qualified(match.group("target"))]:
            body = re.sub(rf"(?<![\w.]){re.escape(name)}(?!\w)", name + LOCAL_SUFFIX, body)
        head = text[:match.start("target")].rstrip()[:-2].rstrip()  # without the trailing "TO"
        head = _insert_at(head, match.end("name"), f" ON CLUSTER {self.cluster}")
        return [f"{head} TO {self._local(match.group('target'))}{body}"]

    def _alter_table(self, text: str) -> list[str]:
        match = re.match(rf"ALTER\s+TABLE\s+{_NAME}\s+", text, re.I)
        if match is None:
            raise ClusterRenderError(f"unreadable ALTER TABLE: {_abbreviated(text)}")
        name = self._qualified(match.group("name"))
        self._known_table(name, text)
        commands = _split_top_level(text[match.end():])
        column_commands = []
        for command in commands:
            words = " ".join(command.split()[:3]).upper()
            if words.startswith(_COLUMN_COMMANDS):
                column_commands.append(command)
            elif not words.startswith(_DATA_COMMANDS):
                raise ClusterRenderError(f"ALTER command {_abbreviated(command)!r} has no cluster rendering "
                                         f"(in {_abbreviated(text)})")
        rendered = [f"ALTER TABLE {self._local(name)} ON CLUSTER {self.cluster} " + ", ".join(commands)]
        if column_commands:
            rendered.append(f"ALTER TABLE {name} ON CLUSTER {self.cluster} " + ", ".join(column_commands))
        return rendered

    def _insert(self, text: str) -> list[str]:
        # Seed rows go through the Distributed table once, with the same write guarantees as the sink.
        match = re.match(rf"INSERT\s+INTO\s+(?:TABLE\s+)?{_NAME}\s*", text, re.I)
        if match is None:
            raise ClusterRenderError(f"unreadable INSERT: {_abbreviated(text)}")
        self._known_table(match.group("name"), text)
        position = match.end()
        if text[position:].startswith("("):
            position = _closing_paren(text, position) + 1
        if re.match(r"\s*SETTINGS\b", text[position:], re.I):
            raise ClusterRenderError(f"an INSERT with its own SETTINGS is not rendered: {_abbreviated(text)}")
        return [f"{text[:position].rstrip()} SETTINGS distributed_foreground_insert = 1 {text[position:].lstrip()}"]

    def _drop(self, text: str) -> list[str]:
        match = re.match(rf"DROP\s+(?P<kind>TABLE|VIEW)\s+(?P<ie>IF\s+EXISTS\s+)?{_NAME}(?P<rest>.*)$", text,
                         re.I | re.S)
        if match is None:
            raise ClusterRenderError(f"unreadable DROP: {_abbreviated(text)}")
        name = self._qualified(match.group("name"))
        head = f"DROP {match.group('kind').upper()} {'IF EXISTS ' if match.group('ie') else ''}"
        tail = match.group("rest").strip()
        dropped = [f"{head}{name} ON CLUSTER {self.cluster} {tail}".rstrip()]
        if self.tables.pop(name, None) is not None:
            dropped.append(f"{head}{name}{LOCAL_SUFFIX} ON CLUSTER {self.cluster} {tail}".rstrip())
        self.views.discard(name)
        return dropped

    def _local_only(self, text: str) -> list[str]:
        match = re.match(rf"(?P<verb>OPTIMIZE|TRUNCATE)\s+TABLE\s+(?:IF\s+EXISTS\s+)?{_NAME}", text, re.I)
        if match is None:
            raise ClusterRenderError(f"unreadable statement: {_abbreviated(text)}")
        self._known_table(match.group("name"), text)
        local = f"{self._local(match.group('name'))} ON CLUSTER {self.cluster}"
        return [text[:match.start("name")] + local + text[match.end("name"):]]


def cluster_write_settings(replicas_per_shard: int) -> dict[str, int]:
    """Query settings for every client that writes to the cluster (the worker's sink, backfill, migrate).

    - `distributed_foreground_insert`: an INSERT into a Distributed table returns only once every shard has
      its rows (by default the rows wait in a local queue and are sent later, so a recomputation that reads
      right after the insert can miss them while the insert already counts as done).
    - `insert_quorum` = replicas per shard: a shard acknowledges only when every replica has the part, so a
      read on any replica sees it. A replica that is down makes inserts fail instead; the worker retries
      the batch and commits nothing to Kafka until it is stored (no loss, writes pause). With three
      replicas, 2 keeps writing through one loss but then needs `select_sequential_consistency` on reads,
      which in turn needs `insert_quorum_parallel = 0` (docs/scaling.md weighs the two).
    - `insert_quorum_timeout`: how long an insert waits for the quorum before failing (and being retried).
    """
    if replicas_per_shard < 1:
        raise ValueError(f"replicas per shard must be at least 1, got {replicas_per_shard}")
    return {
        "distributed_foreground_insert": 1,
        "insert_quorum": replicas_per_shard if replicas_per_shard > 1 else 0,
        "insert_quorum_timeout": 60_000,
    }


def local_table_on_cluster(database: str, table: str, cluster: str) -> str:
    """The target of a statement that must reach the rows themselves on every node (a lightweight
    `DELETE`, a mutation): `<db>.<table>_local ON CLUSTER <cluster>`. A Distributed table holds no rows,
    and `DELETE FROM` one is refused by ClickHouse."""
    for what, value in (("cluster", cluster), ("database", database), ("table", table)):
        _check_identifier(what, value)
    return f"{database}.{table}{LOCAL_SUFFIX} ON CLUSTER {cluster}"


def render_statements(statements: Iterable[str], cluster: str, database: str = "pulse",
                      tables: dict[str, ShardedTable] | None = None) -> list[str]:
    """Cluster statements for single-node statements (`{db}` already replaced). `tables` carries what
    earlier statements created, so that a later ALTER knows its table; it is updated in place."""
    renderer = _renderer(cluster, database, tables)
    return [rendered for statement in statements for rendered in renderer.render(statement)]


def cluster_migrations(cluster: str, database: str = "pulse",
                       files: Iterable[tuple[int, Path]] | None = None) -> list[ClusterMigration]:
    """Every migration file (or `files`), rendered for the cluster, in order."""
    renderer = _renderer(cluster, database, None)
    rendered = []
    for number, path in (migration_files() if files is None else files):
        statements = []
        for statement in _statements(path.read_text(encoding="utf-8")):
            try:
                statements.extend(renderer.render(statement.replace("{db}", database)))
            except ClusterRenderError as error:
                raise ClusterRenderError(f"{path.name}: {error}") from None
        rendered.append(ClusterMigration(number, path.name, statements))
    return rendered


def cluster_bootstrap_statements(cluster: str, database: str = "pulse") -> list[str]:
    """The database and the migrations ledger on every node, created before any migration runs."""
    renderer = _renderer(cluster, database, None)
    return [f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}",
            *renderer.render(LEDGER_DDL.replace("{db}", database))]


def cluster_statements(cluster: str, database: str = "pulse") -> list[str]:
    """The whole schema for a cluster: the database, the migrations ledger and every migration, in order."""
    statements = cluster_bootstrap_statements(cluster, database)
    for migration in cluster_migrations(cluster, database):
        statements.extend(migration.statements)
    return statements


def _renderer(cluster: str, database: str, tables: dict[str, ShardedTable] | None) -> _Renderer:
    _check_identifier("cluster", cluster)
    _check_identifier("database", database)
    renderer = _Renderer(cluster, database)
    if tables is not None:
        renderer.tables = tables
    return renderer


def _check_identifier(what: str, value: str) -> None:
    if not _IDENTIFIER.match(value):
        raise ClusterRenderError(f"{what} name {value!r} must be letters, digits and underscores "
                                 "(it is written into the SQL unquoted)")


def _abbreviated(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + " ..."


def _insert_at(text: str, position: int, addition: str) -> str:
    return text[:position] + addition + text[position:]


def _scan(text: str):
    """Characters outside quoted strings and identifiers, with their parenthesis depth."""
    depth, index, quote = 0, 0, ""
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        else:
            if char == "(":
                depth += 1
            yield index, char, depth
            if char == ")":
                depth -= 1
        index += 1


def _strip_comments(sql: str) -> str:
    """SQL without `-- ...` and `/* ... */` comments (quotes respected)."""
    out, index, quote = [], 0, ""
    while index < len(sql):
        char, pair = sql[index], sql[index:index + 2]
        if quote:
            out.append(char)
            if char == "\\" and index + 1 < len(sql):
                out.append(sql[index + 1])
                index += 1
            elif char == quote:
                quote = ""
        elif pair == "--":
            end = sql.find("\n", index)
            index = len(sql) if end < 0 else end
            continue
        elif pair == "/*":
            end = sql.find("*/", index + 2)
            index = len(sql) if end < 0 else end + 2
            out.append(" ")
            continue
        else:
            if char in "'\"`":
                quote = char
            out.append(char)
        index += 1
    return "".join(out)


def _closing_paren(text: str, opening: int) -> int:
    for index, char, depth in _scan(text[opening:]):
        if char == ")" and depth == 1:
            return opening + index
    raise ClusterRenderError(f"unbalanced parentheses: {_abbreviated(text)}")


def _split_top_level(text: str) -> list[str]:
    parts, start = [], 0
    for index, char, depth in _scan(text):
        if char == "," and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _sorting_key(clauses: str) -> tuple[str, ...]:
    """The ORDER BY expressions (PRIMARY KEY when there is no ORDER BY) of the text after ENGINE = ..."""
    starts = sorted((index, clause) for clause in _CLAUSES for index in _top_level_keyword(clauses, clause))
    found = {clause: clauses[index + len(clause):next_index].strip()
             for (index, clause), (next_index, _) in zip(starts, [*starts[1:], (len(clauses), "")])}
    key = found.get("ORDER BY") or found.get("PRIMARY KEY")
    if key is None:
        raise ClusterRenderError(f"a MergeTree table needs ORDER BY or PRIMARY KEY: {_abbreviated(clauses)}")
    if key.startswith("(") and _closing_paren(key, 0) == len(key) - 1:
        key = key[1:-1]
    return tuple(" ".join(part.split()) for part in _split_top_level(key) if part.lower() != "tuple()")


def _top_level_keyword(text: str, keyword: str) -> list[int]:
    pattern = re.compile(r"(?<![\w.])" + r"\s+".join(keyword.split()) + r"(?!\w)", re.I)
    outside = {index for index, _, depth in _scan(text) if depth == 0}
    return [match.start() for match in pattern.finditer(text) if match.start() in outside]
