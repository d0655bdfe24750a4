"""Event-time rules end to end: hand-placed events just inside and just outside the allowed lateness on
every partition, a wrong clock, an outlier, conflicting and identical copies, through the real broker and
worker, across a restart, compared with the oracle (tests/support/truth.py) and with hand-counted figures."""
from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from sinks.client import Warehouse
from tests.support.services import PulseEnv, WorkerProcess
from tests.support.tables import assert_windows_equal, dead_letter_reasons, stored_windows
from tests.support.truth import LATENESS_S, PARTITIONS, expected_windows, kafka_partition

BASE = time.time() // 60 * 60 - 7200  # two hours ago: recent enough for a clock two days fast to be "future"
WATERMARKS = {p: BASE + 900 * p for p in range(PARTITIONS)}  # a different watermark on each partition


def event_id_on(partition: int) -> str:
    """An event_id that Kafka's default partitioner puts on `partition` (the key of an activation)."""
    while kafka_partition(key := str(uuid.uuid4()), PARTITIONS) != partition:
        pass
    return key


def activation(moment: float, partition: int, event_id: str | None = None, level: int = 1) -> dict:
    return {"type": "id_activation", "event_id": event_id or event_id_on(partition),
            "event_time": datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds"),
            "province_code": "01", "citizen_ref": "cd" * 32, "level": level,
            "method": "police_station" if level == 2 else "self_service", "age_band": "25-34"}


def first_file() -> tuple[list[dict], Counter]:
    """The events, and the dead letters they must give as (reason, partition), counted by hand."""
    events: list[dict] = []
    for p, mark in WATERMARKS.items():
        events += [activation(mark + n, p) for n in range(3)]  # the quorum: the watermark is now `mark`
        if p == 2:  # one honest-looking outlier an hour ahead (in the past for the worker): outvoted
            events.append(activation(mark + 3600, p))
        events += [activation(mark - LATENESS_S + 1, p),  # just inside
                   activation(mark - LATENESS_S - 1, p),  # just outside: too_late
                   activation(BASE - LATENESS_S + 1, p)]  # inside on partition 0 only
    events.append(activation(time.time() + 2 * 86400, 1))  # a terminal whose clock is two days fast
    counted = activation(BASE + 10, 0)
    events += [counted, dict(counted),  # an identical copy: silent
               dict(counted, event_time=activation(BASE + 190, 0)["event_time"]),  # re-stamped 3 min later
               dict(counted, level=2, method="police_station")]  # other content, same event_id
    expected = Counter({("too_late", 0): 1, ("future_time", 1): 1, ("conflicting_duplicate", 0): 2})
    expected.update({("too_late", p): 2 for p in range(1, PARTITIONS)})
    return events, expected


def second_file(first: list[dict]) -> tuple[list[dict], Counter]:
    """After a restart: copies of stored events, and the lateness boundary again on partition 3."""
    stored = first[0]  # partition 0's first event, counted in the first run
    mark = WATERMARKS[3]
    events = [dict(stored), dict(stored, event_time=activation(BASE + 60, 0)["event_time"]),
              activation(mark - LATENESS_S + 1, 3), activation(mark - LATENESS_S - 1, 3)]
    return events, Counter({("conflicting_duplicate", 0): 1, ("too_late", 3): 1})


def write_jsonl(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
    return path


def dead_letters_by_partition(chdb_url: str) -> Counter:
    warehouse = Warehouse(chdb_url, keep_open=False)
    try:
        with warehouse.lease() as client:
            rows = client.query("SELECT reason, partition FROM pulse.dead_letters FINAL").result_rows
    finally:
        warehouse.close()
    return Counter(rows)


def replay_with_a_worker(env: PulseEnv, path: Path) -> None:
    worker = WorkerProcess(env)
    try:
        env.pulse("replay", "--from-file", str(path), "--wait", "--timeout", "180")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]


def test_lateness_boundary_future_bound_and_duplicates_match_the_oracle(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events, expected = first_file()
    first = write_jsonl(tmp_path / "first.jsonl", events)
    replay_with_a_worker(pulse_env, first)
    assert dead_letters_by_partition(pulse_env.chdb_url) == expected
    truth = expected_windows(first)
    assert truth.dead_letters == Counter(reason for reason, _ in expected.elements())  # the oracle agrees by hand
    assert_windows_equal(truth, stored_windows(pulse_env.chdb_url))

    more, expected_more = second_file(events)
    second = write_jsonl(tmp_path / "second.jsonl", more)
    replay_with_a_worker(pulse_env, second)  # a new worker process: nothing of the first is in memory
    assert dead_letters_by_partition(pulse_env.chdb_url) == expected + expected_more
    truth = expected_windows(first, second)
    assert_windows_equal(truth, stored_windows(pulse_env.chdb_url))
    assert dead_letter_reasons(pulse_env.chdb_url) == truth.dead_letters
    activations = sum(c["activations"] for c in truth.windows["id_activations_1m"].values())
    # Quorums, the outlier, the "just inside" ones, BASE-599 on partition 0, the duplicated one, the second run's.
    assert activations == 3 * PARTITIONS + 1 + PARTITIONS + 1 + 1 + 1


def test_simulated_clock_skew_and_conflicting_duplicates_give_the_dead_letters_the_simulator_promised(
        pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = tmp_path / "faulty.jsonl"
    printed = pulse_env.pulse("simulate", "--seed", "16", "--events", "3000", "--rate", "2000", "--speed", "30",
                              "--faults", "clock_skew=0.01,conflicting_duplicate=0.02,duplicate=0.02,late=0.03,"
                              "too_late=0.01", "--out", str(events))
    summary = json.loads(printed.stdout.strip().splitlines()[-1])["faults"]
    replay_with_a_worker(pulse_env, events)
    found = dead_letter_reasons(pulse_env.chdb_url)
    assert found == {"future_time": summary["injected"]["clock_skew"],
                     "conflicting_duplicate": summary["injected"]["conflicting_duplicate"],
                     "too_late": summary["injected"]["too_late"]}
    assert sum(found.values()) == summary["expected_dead_letters"]
    truth = expected_windows(events)
    assert truth.dead_letters == found
    assert_windows_equal(truth, stored_windows(pulse_env.chdb_url))
