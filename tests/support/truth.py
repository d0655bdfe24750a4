"""The expected window tables, computed from a simulator JSONL file with plain Python.

Deliberately independent of streams/ and sinks/: its own parsing, lateness rule, deduplication and
window arithmetic, so a bug there cannot hide itself.
"""
from __future__ import annotations

import binascii
import csv
import json
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "schemas" / "data"
LATENESS_S = 600.0
TABLE_OF_TYPE = {"payment": "payments_1m", "dossier": "dossiers_1m", "id_activation": "id_activations_1m"}


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


def expected_windows(*paths: Path) -> Truth:
    """Windows per table: {(window_start UTC, province): measures}; also dead-letter reasons."""
    provinces = _province_map()
    truth = Truth()
    seen: set[str] = set()
    watermark = {kind: 0.0 for kind in TABLE_OF_TYPE}
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
            if moment < watermark[event["type"]] - LATENESS_S:
                truth.dead_letters["too_late"] += 1
                continue
            watermark[event["type"]] = max(watermark[event["type"]], moment)
            if event["event_id"] in seen:
                continue
            seen.add(event["event_id"])
            truth.accepted += 1
            window = datetime.fromtimestamp(moment // 60 * 60, timezone.utc)
            truth.windows[TABLE_OF_TYPE[event["type"]]][(window, provinces[event["province_code"]])].update(
                _measures(event))
    return truth
