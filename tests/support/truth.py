"""The expected window tables, computed from a simulator JSONL file with plain Python.

Deliberately independent of streams/ and sinks/: its own parsing, event-time rules, deduplication and
window arithmetic, so a bug there cannot hide itself. The rules, as README "Event time" states them:
- future bound: an event more than MAX_FUTURE_S ahead of the worker's clock is `future_time`;
- lateness: an event more than LATENESS_S behind its partition's watermark is `too_late`, where a partition
  is a Kafka partition (the key's murmur2 hash, as every Kafka client's default partitioner computes it) and
  its watermark the WATERMARK_QUORUM-th highest event time among its counted events (0 before that many);
- one event, one count: the first counted copy of an event_id wins; a later copy with the same content is
  dropped, one with other content is `conflicting_duplicate`.
"""
from __future__ import annotations

import binascii
import csv
import json
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from kafka.partitioner.default import murmur2

DATA = Path(__file__).resolve().parents[2] / "schemas" / "data"
LATENESS_S = 600.0
MAX_FUTURE_S = 300.0
WATERMARK_QUORUM = 3
PARTITIONS = 4  # of each input topic on the test broker (Settings.topic_partitions)
TABLE_OF_TYPE = {"payment": "payments_1m", "dossier": "dossiers_1m", "id_activation": "id_activations_1m"}
KEY_OF_TYPE = {"payment": "event_id", "dossier": "dossier_id", "id_activation": "event_id"}  # CONTRACT, topics
TIME_FIELDS = ("event_time", "due_time")


def _province_map() -> dict[str, str]:
    with (DATA / "provinces_legacy.csv").open(encoding="utf-8") as handle:
        mapping = {row["legacy_code"]: row["current_code"] for row in csv.DictReader(handle)}
    mapping.update({code: code for code in set(mapping.values())})
    return mapping


def _crc_ok(payload: str) -> bool:
    body, crc = payload[:-4], payload[-4:]
    return body.endswith("6304") and f"{binascii.crc_hqx(body.encode(), 0xFFFF):04X}" == crc.upper()


def _measures(event: dict) -> dict[str, int]:
    kind = event["type"]
    if kind == "payment":
        ok = event["status"] == "success"
        return {"tx_count": 1, "success_count": int(ok), "amount_vnd": event["amount_vnd"] if ok else 0}
    if kind == "id_activation":
        activated = event.get("step", "activated") == "activated"  # registrations/approvals are not counted
        return {"activations": int(activated), "level2_activations": int(activated and event["level"] == 2)}
    submitted = event["stage"] == "submitted"
    online = submitted and event["channel"] == "online"
    returned = event["stage"] == "returned"
    return {
        "submitted_online": int(online),
        "submitted_offline": int(submitted and event["channel"] == "offline"),
        "submitted_full_process_online": int(online and event["full_process"]),
        "completed": int(returned),
        "completed_on_time": int(returned and _ts(event["event_time"]) <= _ts(event["due_time"])),
        "paid_online": int(returned and event["paid_online"]),
        "vneid_authenticated": int(online and event["vneid_authenticated"]),
    }


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class Truth:
    def __init__(self) -> None:
        self.windows: dict[str, dict[tuple[datetime, str], Counter]] = defaultdict(lambda: defaultdict(Counter))
        self.dead_letters: Counter = Counter()
        self.accepted = 0


def kafka_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed message."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class Watermark:
    """One partition's watermark: the quorum-th highest event time counted there, 0 before that many."""

    def __init__(self, quorum: int) -> None:
        self.quorum = quorum
        self.highest: list[float] = []  # descending, at most `quorum` long

    @property
    def value(self) -> float:
        return self.highest[-1] if len(self.highest) == self.quorum else 0.0

    def count(self, moment: float) -> None:
        self.highest = sorted([*self.highest, moment], reverse=True)[:self.quorum]


def _content(event: dict, provinces: dict[str, str]) -> dict:
    """What makes two copies the same event: every field, instants as instants and the province as counted."""
    same = {name: _ts(value) if name in TIME_FIELDS else value for name, value in event.items()}
    same["province_code"] = provinces[event["province_code"]]
    return same


def expected_windows(*paths: Path, partitions: int = PARTITIONS, now: float | None = None,
                     quorum: int = WATERMARK_QUORUM) -> Truth:
    """Windows per table: {(window_start UTC, province): measures}; also dead-letter reasons.

    `partitions`: of the input topics the files are replayed to (1 for `pulse replay --direct`, which keeps
    one pseudo-partition per file and stream); `now`: the worker's clock, by default this one's."""
    provinces = _province_map()
    horizon = (time.time() if now is None else now) + MAX_FUTURE_S
    truth = Truth()
    first_copy: dict[str, dict] = {}
    watermarks: dict[tuple[str, int], Watermark] = defaultdict(lambda: Watermark(quorum))
    for path in paths:
        for line in path.read_bytes().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                truth.dead_letters["malformed_json"] += 1
                continue
            if event["province_code"] not in provinces:
                truth.dead_letters["unknown_province"] += 1
                continue
            if event["type"] == "payment" and not _crc_ok(event["qr_payload"]):
                truth.dead_letters["bad_qr"] += 1
                continue
            moment = _ts(event["event_time"])
            if moment > horizon:
                truth.dead_letters["future_time"] += 1
                continue
            watermark = watermarks[(event["type"], kafka_partition(event[KEY_OF_TYPE[event["type"]]], partitions))]
            if moment < watermark.value - LATENESS_S:
                truth.dead_letters["too_late"] += 1
                continue
            content = _content(event, provinces)
            first = first_copy.get(event["event_id"])
            if first is not None:
                if first != content:
                    truth.dead_letters["conflicting_duplicate"] += 1
                continue
            first_copy[event["event_id"]] = content
            watermark.count(moment)
            truth.accepted += 1
            window = datetime.fromtimestamp(moment // 60 * 60, timezone.utc)
            truth.windows[TABLE_OF_TYPE[event["type"]]][(window, provinces[event["province_code"]])].update(
                _measures(event))
    return truth
