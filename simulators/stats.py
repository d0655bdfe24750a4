"""Statistics of a simulator JSONL file, to check a run against its scenario's calibration.

`describe(path)` reads the file once (plain Python, independent of the generator's internals) and returns a
JSON-serializable dict: per-stream counts, payment category shares and, of market payments, failure/dynamic
shares, amount quantiles, hour-of-day profile and peaks, province shares, bank shares, VietQR agreement;
dossier online / full-process / VNeID / online-payment shares, lifecycle validity and late share (returned
after due time) nationally and per province; identity lifecycle step shares and, of registrations, level-2
share, methods and age bands. With `scenario=` (a name, path or loaded dict) it
adds the scenario's targets under "expected" so the two can be read side by side.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from schemas.provinces import code_map, provinces
from schemas.vietqr import VietQRError, decode
from simulators import scenario as scenarios
from simulators.scenario import province_setting

VN_TZ = timezone(timedelta(hours=7))
STAGE_ORDER = ("submitted", "accepted", "appraised", "approved", "signed", "returned")
MORNING = range(4, 12)
AFTERNOON = range(12, 21)


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(VN_TZ)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _quantile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _shares(counter: Counter, digits: int = 6) -> dict[str, float]:
    total = sum(counter.values())
    return {str(key): round(value / total, digits) for key, value in sorted(counter.items())} if total else {}


def _peak(hourly: list[float], hours: range) -> int | None:
    """The busiest hour within `hours`, or None when none of them saw a payment (a short run)."""
    best = max(hours, key=lambda h: hourly[h])
    return best if hourly[best] > 0 else None


def lifecycle_ok(stages: list[str]) -> bool:
    """A dossier's stages (in emission order) form a valid path of the state machine (possibly unfinished)."""
    if stages[:3] == ["submitted", "accepted", "supplement_requested"]:  # asked for once, after acceptance
        stages = stages[:2] + stages[3:]
    if stages and stages[-1] == "rated":  # only after the result
        return stages[:-1] == list(STAGE_ORDER)
    if stages and stages[-1] == "withdrawn":
        return stages[:-1] == ["submitted", "accepted"]
    if stages and stages[-1] == "rejected":
        return 2 <= len(stages) - 1 <= 3 and list(STAGE_ORDER[: len(stages) - 1]) == stages[:-1]
    return 1 <= len(stages) <= len(STAGE_ORDER) and list(STAGE_ORDER[: len(stages)]) == stages


def describe(path: Path, scenario: str | dict | None = None) -> dict[str, Any]:
    """Statistics of the events in a JSONL file (see the module docstring)."""
    mapping = code_map()
    lines = malformed = duplicates = unknown_province = 0
    seen: set[str] = set()
    counts: Counter = Counter()
    first = last = None
    # payments
    pay_province: Counter = Counter()
    pay_hour: Counter = Counter()
    payer_banks: Counter = Counter()
    amounts: list[int] = []
    failed = dynamic = qr_valid = qr_agrees = 0
    categories: Counter = Counter()
    steps: Counter = Counter()
    # dossiers
    dossiers: dict[str, dict[str, Any]] = {}
    # identity
    level2 = level1 = self_service_level1 = 0
    methods: Counter = Counter()
    bands: Counter = Counter()
    id_province: Counter = Counter()
    id_hour: Counter = Counter()

    with Path(path).open("rb") as handle:
        for raw in handle:
            line = raw.strip()
            if not line:
                continue
            lines += 1
            try:
                event = orjson.loads(line)
                kind = event["type"]
                event_id = event["event_id"]
                moment = _local(event["event_time"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                malformed += 1
                continue
            if event_id in seen:
                duplicates += 1
                continue
            seen.add(event_id)
            province = mapping.get(event.get("province_code", ""))
            if province is None:
                unknown_province += 1
                continue
            counts[kind] += 1
            first = moment if first is None or moment < first else first
            last = moment if last is None or moment > last else last
            if kind == "payment" and event.get("category", "market") != "market":
                categories[event["category"]] += 1  # bills, fees, payouts: counted, not in the market figures
            elif kind == "payment":
                categories["market"] += 1
                pay_province[province] += 1
                pay_hour[moment.hour] += 1
                payer_banks[event["payer_bank_bin"]] += 1
                amount = event["amount_vnd"]
                amounts.append(amount)
                failed += event["status"] == "failed"
                is_dynamic = event["channel"] == "vietqr_dynamic"
                dynamic += is_dynamic
                try:
                    qr = decode(event["qr_payload"])
                except VietQRError:
                    continue
                qr_valid += 1
                qr_agrees += (qr.bank_bin == event["payee_bank_bin"] and qr.is_dynamic == is_dynamic
                              and qr.amount == (amount if is_dynamic else None))
            elif kind == "dossier":
                record = dossiers.get(event["dossier_id"])
                if record is None:
                    record = dossiers[event["dossier_id"]] = {
                        "province": province, "stages": [], "times": [], "due": set(), "channel": event["channel"],
                        "full_process": event["full_process"], "procedure": event["procedure_code"],
                        "paid_online": event["paid_online"], "vneid": event["vneid_authenticated"],
                    }
                record["stages"].append(event["stage"])
                record["times"].append(moment.timestamp())
                record["due"].add(_ts(event["due_time"]))
            elif kind == "id_activation":
                steps[event.get("step", "activated")] += 1
                if event.get("step", "activated") != "registered":
                    continue  # levels, methods and ages are those of registrations
                id_province[province] += 1
                id_hour[moment.hour] += 1
                methods[event["method"]] += 1
                bands[event["age_band"]] += 1
                if event["level"] == 2:
                    level2 += 1
                else:
                    level1 += 1
                    self_service_level1 += event["method"] == "self_service"

    result: dict[str, Any] = {
        "lines": lines, "malformed": malformed, "duplicates": duplicates, "unknown_province": unknown_province,
        "events": {"payments": counts["payment"], "dossiers": counts["dossier"], "identity": counts["id_activation"]},
        "event_time": {
            "first": first.isoformat() if first else None, "last": last.isoformat() if last else None,
            "span_hours": round((last - first).total_seconds() / 3600, 3) if first and last else 0.0,
        },
    }
    amounts.sort()
    pay_total = categories["market"]
    hourly = [pay_hour.get(h, 0) / pay_total if pay_total else 0.0 for h in range(24)]
    logs = [math.log(a) for a in amounts]
    result["payments"] = {
        "count": pay_total,
        "category_share": _shares(categories),
        "failure_rate": _share(failed, pay_total),
        "dynamic_share": _share(dynamic, pay_total),
        "amount_median_vnd": _quantile(amounts, 0.5),
        "amount_p10_vnd": _quantile(amounts, 0.1),
        "amount_p90_vnd": _quantile(amounts, 0.9),
        "amount_mean_vnd": round(sum(amounts) / pay_total) if pay_total else None,
        "amount_log_sigma": round((_quantile(logs, 0.75) - _quantile(logs, 0.25)) / 1.34898, 4) if logs else None,
        "qr_valid_share": _share(qr_valid, pay_total),
        "qr_agrees_share": _share(qr_agrees, pay_total),
        "hourly_share": [round(v, 5) for v in hourly],
        "morning_peak_hour": _peak(hourly, MORNING),
        "afternoon_peak_hour": _peak(hourly, AFTERNOON),
        "province_share": _shares(pay_province),
        "payer_bank_share_top5": dict(sorted(_shares(payer_banks).items(), key=lambda kv: -kv[1])[:5]),
    }
    result["dossiers"] = _dossier_stats(dossiers, counts["dossier"])
    id_total = steps["registered"]
    result["identity"] = {
        "count": counts["id_activation"],
        "step_share": _shares(steps),
        "level2_share": _share(level2, id_total),
        "self_service_share_level1": _share(self_service_level1, level1),
        "method_share": _shares(methods),
        "age_band_share": _shares(bands),
        "province_share": _shares(id_province),
        "hourly_share": [round(id_hour.get(h, 0) / id_total, 5) if id_total else 0.0 for h in range(24)],
    }
    if scenario is not None:
        result["expected"] = expected(scenario)
        shares = result["payments"]["province_share"]
        target = result["expected"]["payments_province_share"]
        result["payments"]["province_share_max_abs_error"] = (
            round(max(abs(shares.get(code, 0.0) - share) for code, share in target.items()), 6) if shares else None)
    return result


def _dossier_stats(dossiers: dict[str, dict[str, Any]], events: int) -> dict[str, Any]:
    stages: Counter = Counter()
    submitted = online = full_process = vneid_online = paid_online_online = 0
    returned = late = paid_online_returned = rejected = invalid = due_not_after = 0
    by_province: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # returned, late
    procedures: dict[str, bool] = {}
    for record in dossiers.values():
        path, times = record["stages"], record["times"]
        stages.update(path)
        if not lifecycle_ok(path) or times != sorted(times) or len(record["due"]) != 1:
            invalid += 1
        due = min(record["due"])
        procedures[record["procedure"]] = record["full_process"]
        if path[0] == "submitted":
            submitted += 1
            due_not_after += due <= times[0]
            full_process += record["full_process"]
            if record["channel"] == "online":
                online += 1
                vneid_online += record["vneid"]
                paid_online_online += record["paid_online"]
        if path[-1] == "rejected":
            rejected += 1
        if "returned" in path:  # possibly followed by a rating
            returned += 1
            paid_online_returned += record["paid_online"]
            is_late = times[path.index("returned")] > due
            late += is_late
            counter = by_province[record["province"]]
            counter[0] += 1
            counter[1] += is_late
    return {
        "events": events,
        "dossiers": len(dossiers),
        "stages": dict(stages),
        "submitted": submitted,
        "online_share": _share(online, submitted),
        "full_process_share_of_submissions": _share(full_process, submitted),
        "full_process_share_of_procedures": _share(sum(procedures.values()), len(procedures)),
        "vneid_share_of_online": _share(vneid_online, online),
        "paid_online_share_of_online": _share(paid_online_online, online),
        "paid_online_share_of_returned": _share(paid_online_returned, returned),
        "rejected": rejected,
        "returned": returned,
        "late_share": _share(late, returned),
        "late_share_by_province": {
            code: {"returned": n, "late_share": _share(k, n)} for code, (n, k) in sorted(by_province.items())
        },
        "invalid_lifecycles": invalid,
        "due_not_after_submission": due_not_after,
    }


def expected(scenario: str | dict) -> dict[str, Any]:
    """The scenario's calibration targets, in the same terms as describe()."""
    sc = scenarios.load(scenario) if isinstance(scenario, str) else scenario
    units = provinces()
    weights = {code: unit.population_millions * province_setting(sc, code, "cashless", 1.0)
               for code, unit in units.items()}
    total = sum(weights.values())
    hourly = [float(v) for v in sc["payments"]["hourly"]]
    pay, dos, ide = sc["payments"], sc["dossiers"], sc["identity"]
    return {
        "payments_failure_rate": pay["failure_rate"],
        "payments_dynamic_share": pay["dynamic_share"],
        "payments_amount_median_vnd": pay["amount_median_vnd"],
        "payments_amount_sigma": pay["amount_sigma"],
        "payments_hourly_share": [round(v / sum(hourly), 5) for v in hourly],
        "payments_province_share": {code: round(w / total, 6) for code, w in weights.items()},
        "dossiers_online_share": dos["online_share"],
        "dossiers_vneid_share_of_online": dos["vneid_auth_share"],
        "dossiers_paid_online_share_of_online": dos["paid_online_share"],
        "dossiers_late_share": dos["late_rate"],
        "dossiers_late_share_by_province": {
            code: float(settings["late_rate"]) for code, settings in sc.get("provinces", {}).items()
            if "late_rate" in settings
        },
        "identity_level2_share": ide["level2_share"],
        "identity_self_service_share_level1": ide["self_service_share_level1"],
    }
