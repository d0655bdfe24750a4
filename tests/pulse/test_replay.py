"""`pulse replay` on the real broker and chDB: idempotence, --direct versus Kafka, --dry-run (issue 7).

Helpers used by the other replay, archive and backfill tests live here too.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from pulse.kafka_tools import end_offsets
from pulse.replay import _route
from pulse.settings import STREAM_TOPICS
from sinks.client import Warehouse
from sinks.windows import WINDOW_SPECS
from tests.support.services import PulseEnv, WorkerProcess
from tests.support.tables import assert_windows_equal, dead_letter_reasons, stored_windows
from tests.support.truth import _province_map, expected_windows
from tests.test_end_to_end import ALL_FAULTS, simulate

EVENTS = 3000
STREAM_OF_TYPE = {"payment": "payments", "dossier": "dossiers", "id_activation": "identity"}


def make_events(env: PulseEnv, path: Path, events: int = EVENTS, seed: int = 31) -> Path:
    """A simulated JSONL file with every kind of fault; gzip-compressed when `path` ends in .gz."""
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    simulate(env, plain, events, seed=seed, faults=ALL_FAULTS)
    if path.suffix == ".gz":
        with plain.open("rb") as source, gzip.open(path, "wb") as target:
            shutil.copyfileobj(source, target)
    return path


def plain_lines(path: Path) -> list[bytes]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [line for line in data.splitlines() if line]


def direct_env(env: PulseEnv, tmp_path: Path, name: str) -> PulseEnv:
    """Another environment on the same broker with a store of its own (and its own consumer group)."""
    return PulseEnv(state_dir=tmp_path / name, bootstrap=env.bootstrap)


def run_json(env: PulseEnv, *args: str, timeout: float = 300) -> dict:
    result = env.pulse(*args, timeout=timeout)
    return json.loads(result.stdout.strip().splitlines()[-1])


def window_rows(chdb_url: str) -> dict[str, list[tuple]]:
    """Every window row (FINAL) with all measures and the version, sorted; `updated_at` left out."""
    warehouse = Warehouse(chdb_url, keep_open=False)
    try:
        with warehouse.lease() as client:
            return {spec.table: sorted(client.query(
                f"SELECT {', '.join(spec.columns)} FROM pulse.{spec.table} FINAL").result_rows)
                for spec in WINDOW_SPECS.values()}
    finally:
        warehouse.close()


def query_rows(chdb_url: str, sql: str) -> list[tuple]:
    warehouse = Warehouse(chdb_url, keep_open=False)
    try:
        with warehouse.lease() as client:
            return client.query(sql).result_rows
    finally:
        warehouse.close()


def input_topic_total(env: PulseEnv) -> int:
    ends = end_offsets(env.bootstrap, STREAM_TOPICS.values())
    return sum(ends.values())


def check_truth(chdb_url: str, path: Path) -> None:
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    truth = expected_windows(plain)
    assert_windows_equal(truth, stored_windows(chdb_url))
    assert dead_letter_reasons(chdb_url) == truth.dead_letters


def test_replaying_the_same_file_twice_leaves_window_tables_unchanged(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = make_events(pulse_env, tmp_path / "events.jsonl.gz")
    worker = WorkerProcess(pulse_env)
    try:
        pulse_env.pulse("replay", "--from-file", str(events), "--wait", "--timeout", "180")
        first = window_rows(pulse_env.chdb_url)
        pulse_env.pulse("replay", "--from-file", str(events), "--wait", "--timeout", "180")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert window_rows(pulse_env.chdb_url) == first
    assert_windows_equal(expected_windows(events.with_suffix("")), stored_windows(pulse_env.chdb_url))

    direct = direct_env(pulse_env, tmp_path, "direct")
    once = run_json(direct, "replay", "--from-file", str(events), "--direct")
    rows = window_rows(direct.chdb_url)
    twice = run_json(direct, "replay", "--from-file", str(events), "--direct")
    assert window_rows(direct.chdb_url) == rows == first
    assert once["accepted"] > 0 and once["skipped_already_stored"] == 0
    # The second direct replay is recognised by its pseudo-topics: everything is already stored.
    assert twice["accepted"] == 0 and twice["skipped_already_stored"] == len(plain_lines(events))
    check_truth(direct.chdb_url, events)


def test_direct_and_kafka_paths_give_identical_tables(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = make_events(pulse_env, tmp_path / "events.jsonl", seed=32)
    worker = WorkerProcess(pulse_env)
    try:
        pulse_env.pulse("replay", "--from-file", str(events), "--wait", "--timeout", "180")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    direct = direct_env(pulse_env, tmp_path, "direct")
    report = run_json(direct, "replay", "--from-file", str(events), "--direct")

    assert window_rows(direct.chdb_url) == window_rows(pulse_env.chdb_url)
    assert dead_letter_reasons(direct.chdb_url) == dead_letter_reasons(pulse_env.chdb_url)
    check_truth(direct.chdb_url, events)

    # Progress of a direct file replay: one row per stream under its pseudo-topic, offset = last line stored.
    lines = plain_lines(events)
    last_line = {_route(line)[0]: number for number, line in enumerate(lines)}
    offsets = dict(query_rows(direct.chdb_url, "SELECT topic, offset FROM pulse.stream_offsets FINAL"))
    assert set(offsets) == set(report["progress_topics"])
    digest = hashlib.sha256(events.read_bytes()).hexdigest()[:12]
    assert offsets == {f"replay:events.jsonl@{digest}/{stream}": line for stream, line in last_line.items()}
    assert not set(offsets) & set(STREAM_TOPICS.values()), "a direct replay must not touch the input partitions"
    dead_topics = {row[0] for row in query_rows(direct.chdb_url, "SELECT DISTINCT topic FROM pulse.dead_letters")}
    assert dead_topics <= set(offsets)


def _expected_send_counts(lines: list[bytes]) -> dict:
    provinces = _province_map()
    counts: Counter = Counter()
    for line in lines:
        try:
            event = json.loads(line)
            day = datetime.fromisoformat(event["event_time"]).astimezone(timezone.utc).date().isoformat()
            code = provinces.get(event["province_code"], "?" + event["province_code"])
            stream = STREAM_OF_TYPE[event["type"]]
        except (ValueError, KeyError):
            continue  # a malformed line: counted under "?" below
        counts[(stream, day, code)] += 1
    tree: dict = {}
    for (stream, day, code), count in counts.items():
        tree.setdefault(stream, {}).setdefault(day, {})[code] = count
    return tree


def test_dry_run_writes_nothing(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = make_events(pulse_env, tmp_path / "events.jsonl", seed=33)
    lines = plain_lines(events)
    truth = expected_windows(events)
    env = direct_env(pulse_env, tmp_path, "dry")
    before = end_offsets(env.bootstrap, STREAM_TOPICS.values())

    to_kafka = run_json(env, "replay", "--from-file", str(events), "--dry-run")
    direct = run_json(env, "replay", "--from-file", str(events), "--direct", "--dry-run")

    assert end_offsets(env.bootstrap, STREAM_TOPICS.values()) == before, "a dry run sent messages"
    assert not env.state_dir.exists() or not any(env.state_dir.iterdir()), \
        f"a dry run left files: {list(env.state_dir.rglob('*'))}"
    assert to_kafka["dry_run"] and to_kafka["messages"] == len(lines)
    sent = to_kafka["would_send"]
    malformed = sum(count for days in sent.values() for provinces in days.values()
                    for code, count in provinces.items() if code == "?")
    assert malformed == truth.dead_letters["malformed_json"]
    for stream, days in sent.items():
        for day in days:
            days[day].pop("?", None)
        sent[stream] = {day: codes for day, codes in days.items() if codes}
    assert sent == _expected_send_counts(lines)
    # Through the pipeline: exactly the dead letters the worker would write, the rest would be stored.
    assert direct["would_dead_letter"] == dict(truth.dead_letters)
    would_write = sum(count for days in direct["would_write"].values() for codes in days.values()
                      for count in codes.values())
    # Identical copies are dropped, not written again (README, "Event time": one event, one count).
    assert would_write == truth.accepted < len(lines) - sum(truth.dead_letters.values())
