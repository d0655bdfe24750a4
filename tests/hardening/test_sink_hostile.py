"""Hostile text reaches ClickHouse as data (issue 8), and the retention migration works in chDB.

Everything runs against a real embedded ClickHouse (chDB) through sinks.sink.ClickHouseSink."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sinks import schema
from sinks.client import Warehouse
from sinks.sink import ClickHouseSink
from streams.pipeline import Message, Pipeline
from tests.hardening.hostile import SQL, SQL_TEXTS, awkward_valid_events, dumps, hostile_messages

TOPICS = {"pulse.payments.vietqr": "payments", "pulse.dossiers.events": "dossiers",
          "pulse.identity.activations": "identity"}
TOPIC_OF = {stream: topic for topic, stream in TOPICS.items()}
TABLES = {"payments", "dossier_events", "id_activations", "dead_letters", "payments_1m", "dossiers_1m",
          "id_activations_1m", "stream_offsets", "schema_migrations"}


def query(sink: ClickHouseSink, sql: str, **parameters: object) -> list[tuple]:
    with sink.transaction() as tx:
        return tx.client.query(sql, parameters=parameters).result_rows


def as_messages(values: list[tuple[str, bytes | None]], key: bytes = b"k") -> list[Message]:
    offsets: dict[str, int] = {}
    messages = []
    for stream, value in values:
        topic = TOPIC_OF[stream]
        offsets[topic] = offsets.get(topic, -1) + 1
        messages.append(Message(topic, 0, offsets[topic], key, value, 0.0))
    return messages


def process(sink: ClickHouseSink, values: list[tuple[str, bytes | None]], key: bytes = b"k"):
    return Pipeline(sink, TOPICS, lateness_s=600, max_message_bytes=262_144).process(as_messages(values, key))


def test_sql_looking_text_is_stored_verbatim_and_every_table_survives(sink: ClickHouseSink) -> None:
    events = awkward_valid_events()
    outcome = process(sink, [(stream, dumps(event)) for stream, event in events], key=SQL.encode())
    assert outcome.accepted == len(events) and not outcome.dead_letters

    assert set(TABLES) <= {row[0] for row in query(sink, "SELECT name FROM system.tables WHERE database = 'pulse'")}
    stored = dict(query(sink, "SELECT event_id, market_id FROM pulse.payments FINAL"))
    for stream, event in events:
        if stream == "payments":
            assert stored[event["event_id"]] == event["market_id"]
    dossiers = {row[0]: row[1:] for row in query(
        sink, "SELECT event_id, dossier_id, procedure_code FROM pulse.dossier_events FINAL")}
    for stream, event in events:
        if stream == "dossiers":
            assert dossiers[event["event_id"]] == (event["dossier_id"], event["procedure_code"])
    assert {row[0] for row in query(sink, "SELECT market_id FROM pulse.payments")} >= set(SQL_TEXTS)
    assert query(sink, "SELECT count() FROM pulse.payments WHERE market_id = {m:String}", m=SQL) == [(1,)]
    assert query(sink, "SELECT sum(tx_count) FROM pulse.payments_1m FINAL") == [
        (sum(stream == "payments" for stream, _ in events),)]


def test_hostile_messages_become_dead_letters_with_sql_kept_as_data(sink: ClickHouseSink) -> None:
    hostile = [h for h in hostile_messages(262_144, huge_bytes=600_000)]
    sql_raw = b'{"type":"payment","market_id":"' + SQL.encode() + b'"'  # truncated: malformed, SQL in raw
    values = [(h.stream, h.value) for h in hostile] + [("payments", sql_raw)]
    messages = as_messages(values, key=SQL.encode())
    expected = {(m.topic, m.offset): reason for m, reason in zip(messages, [h.reason for h in hostile] + ["malformed_json"])}
    outcome = Pipeline(sink, TOPICS, lateness_s=600, max_message_bytes=262_144).process(messages)
    assert {(r.topic, r.offset): r.reason for _, r in outcome.dead_letters} == expected
    rows = query(sink, "SELECT topic, offset, reason, key, raw FROM pulse.dead_letters FINAL")
    by_place = {(topic, offset): (reason, key, raw) for topic, offset, reason, key, raw in rows}
    assert {place: reason for place, (reason, _, _) in by_place.items()} == expected
    assert by_place[(messages[-1].topic, messages[-1].offset)] == ("malformed_json", SQL, sql_raw.decode())
    assert set(TABLES) <= {row[0] for row in query(sink, "SELECT name FROM system.tables WHERE database = 'pulse'")}
    for h in hostile:
        if h.secret:
            assert not query(sink, "SELECT count() FROM pulse.dead_letters WHERE position(raw, {s:String}) > 0 "
                                   "OR position(error, {s:String}) > 0", s=h.secret)[0][0]
    assert max(len(raw) for _, _, raw in by_place.values()) <= 65_536  # huge messages are cut


def test_retention_migration_applies_to_an_existing_store_and_expires_old_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = Warehouse(f"chdb://{tmp_path / 'ch'}", keep_open=True)
    try:
        with warehouse.lease() as client:
            first = schema.migration_files()[:1]
            monkeypatch.setattr(schema, "migration_files", lambda: first)  # a store from before 0002
            assert schema.migrate(client, "pulse") == ["0001_initial.sql"]
            client.insert("pulse.dead_letters", [["t", 0, 1, "", "invalid", "e", "{}"]],
                          column_names=["topic", "partition", "offset", "key", "reason", "error", "raw"])
            monkeypatch.undo()
            assert schema.migrate(client, "pulse") == [path.name for _, path in schema.migration_files()[1:]]
            assert schema.migrate(client, "pulse") == []

            for table in ("payments", "dossier_events", "id_activations"):
                ddl = client.query(f"SHOW CREATE TABLE pulse.{table}").result_rows[0][0]
                assert "TTL toDateTime(ingested_at) + toIntervalDay(400)" in ddl, ddl
            ddl = client.query("SHOW CREATE TABLE pulse.dead_letters").result_rows[0][0]
            assert "TTL stored_at + toIntervalDay(90)" in ddl, ddl
            # The row from before the migration got a real stored_at (not one recomputed at every read).
            before = client.query("SELECT stored_at FROM pulse.dead_letters").result_rows[0][0]
            assert abs(before.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)) < timedelta(minutes=10)

            now = datetime.now(timezone.utc)
            columns = ["event_id", "event_time", "province_code", "citizen_ref", "level", "method", "age_band",
                       "ingested_at"]
            client.insert("pulse.id_activations", [
                ["old", now - timedelta(days=900), "01", "r", 1, "self_service", "25-39", now - timedelta(days=401)],
                ["kept", now - timedelta(days=900), "01", "r", 1, "self_service", "25-39", now - timedelta(days=399)],
            ], column_names=columns)
            client.insert("pulse.dead_letters", [
                ["t", 0, 2, "", "invalid", "e", "{}", now - timedelta(days=91)],
                ["t", 0, 3, "", "invalid", "e", "{}", now - timedelta(days=89)],
            ], column_names=["topic", "partition", "offset", "key", "reason", "error", "raw", "stored_at"])
            for table in ("id_activations", "dead_letters"):
                client.command(f"OPTIMIZE TABLE pulse.{table} FINAL")
            assert client.query("SELECT event_id FROM pulse.id_activations").result_rows == [("kept",)]
            assert sorted(client.query("SELECT offset FROM pulse.dead_letters").result_rows) == [(1,), (3,)]
    finally:
        warehouse.close()


def test_sink_writes_keep_working_after_the_retention_migration(sink: ClickHouseSink) -> None:
    """Dead letters are inserted by column name: the new stored_at column takes its default."""
    outcome = process(sink, [("identity", b"{not json")])
    assert [record.reason for _, record in outcome.dead_letters] == ["malformed_json"]
    [(stored_at,)] = query(sink, "SELECT stored_at FROM pulse.dead_letters")
    assert abs(stored_at.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)) < timedelta(minutes=10)
