"""Scenario files (TOML) under simulators/scenarios/: a world's rhythm, mix and per-province quirks.

Keys understood beyond the stream sections' scalars (see default.toml for the full set):
- `[<stream>] hourly` (24 values, local hour) and `weekly` (Monday..Sunday): relative intensity. Each
  stream's hourly x weekly profile is normalized to a weekly mean of 1, so `mix` is the long-run share
  of starts and `--speed` holds on average over a week.
- `[<stream>] special_days`: Tết-style days, `[{date = 2026-02-16, multiplier = 1.8}, ...]` (or a table
  `{"2026-02-16" = 1.8}`), multiplying that stream's intensity for the whole local day.
- `[dossiers] office_hours` ([[from, to], ...] local hours), `office_days` (0 = Monday) and `holidays`
  (dates): offline counters only receive dossiers then, and stage transitions are walked on that calendar.
- `[[identity.campaigns]]`: activation bursts, `provinces`, `boost`, optional `hours = [from, to)`,
  `weekdays`, `start`/`end` (dates or datetimes, local time when naive) and `level2_share`.
- `[provinces.<code>]`: `cashless`, `failure_rate`, `online_share`, `late_rate`, `paid_online_share`,
  `vneid_auth_share`, `identity_boost`, `level2_share`.
"""
from __future__ import annotations

import tomllib
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

SCENARIO_DIR = Path(__file__).parent / "scenarios"
VN_TZ = timezone(timedelta(hours=7))
STREAM_SECTIONS = ("payments", "dossiers", "identity")
PROVINCE_KEYS = frozenset({"cashless", "failure_rate", "online_share", "late_rate", "paid_online_share",
                           "vneid_auth_share", "identity_boost", "level2_share"})
REQUIRED_KEYS = {
    "payments": ("markets_per_million", "merchants_per_market", "amount_median_vnd", "amount_sigma", "failure_rate",
                 "dynamic_share"),
    "dossiers": ("online_share", "paid_online_share", "vneid_auth_share", "rejection_rate", "late_rate",
                 "lifecycle_scale"),
    "identity": ("level2_share", "self_service_share_level1"),
}
SHARE_KEYS = {
    "payments": ("failure_rate", "dynamic_share"),
    "dossiers": ("online_share", "paid_online_share", "vneid_auth_share", "rejection_rate", "late_rate",
                 "supplement_rate", "withdrawal_rate", "rated_share"),
    "identity": ("level2_share", "self_service_share_level1"),
}


def available() -> list[str]:
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.toml"))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load(name_or_path: str) -> dict[str, Any]:
    """A scenario by name (a file in scenarios/) or by path, with `extends` resolved."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"no scenario {name_or_path!r}; available: {', '.join(available())}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    parent = data.pop("extends", None)
    return _merge(load(parent), data) if parent else data


def province_setting(scenario: dict[str, Any], code: str, key: str, default: float) -> float:
    return float(scenario.get("provinces", {}).get(code, {}).get(key, default))


# -- calendar helpers ---------------------------------------------------------------------------------
def parse_date(value: Any) -> date:
    """A TOML local date, a datetime's local date, or an ISO `YYYY-MM-DD` string."""
    if isinstance(value, datetime):
        return (value.astimezone(VN_TZ) if value.tzinfo else value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise ValueError(f"not a date: {value!r}")


def parse_moment(value: Any) -> float:
    """Epoch seconds of a date (local midnight), a datetime (naive = Vietnam time) or an ISO string."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=VN_TZ)).timestamp()
    if isinstance(value, date):
        return datetime.combine(value, time(0), VN_TZ).timestamp()
    raise ValueError(f"not a date or datetime: {value!r}")


def special_days(section: dict[str, Any]) -> dict[date, float]:
    """`special_days` of a stream section as {local date: intensity multiplier}."""
    raw = section.get("special_days", [])
    items = raw.items() if isinstance(raw, dict) else ((entry["date"], entry["multiplier"]) for entry in raw)
    days: dict[date, float] = {}
    for day, multiplier in items:
        multiplier = float(multiplier)
        if multiplier < 0:
            raise ValueError(f"special day {day}: multiplier must be >= 0, got {multiplier}")
        days[parse_date(day)] = multiplier
    return days


def holidays(section: dict[str, Any]) -> set[date]:
    return {parse_date(day) for day in section.get("holidays", [])}


def validate(scenario: dict[str, Any]) -> None:
    """Raise ValueError naming the first key that cannot drive a simulation."""
    mix = scenario.get("mix")
    if not isinstance(mix, dict) or any(s not in mix for s in STREAM_SECTIONS):
        raise ValueError(f"scenario needs [mix] with {', '.join(STREAM_SECTIONS)}")
    if any(float(mix[s]) < 0 for s in STREAM_SECTIONS) or sum(float(mix[s]) for s in STREAM_SECTIONS) <= 0:
        raise ValueError("[mix] shares must be >= 0 and not all zero")
    for stream in STREAM_SECTIONS:
        section = scenario.get(stream)
        if not isinstance(section, dict):
            raise ValueError(f"scenario needs a [{stream}] section")
        missing = [key for key in REQUIRED_KEYS[stream] if key not in section]
        if missing:
            raise ValueError(f"[{stream}] misses {', '.join(missing)}")
        hourly, weekly = section.get("hourly"), section.get("weekly")
        if not (isinstance(hourly, list) and len(hourly) == 24 and all(float(v) >= 0 for v in hourly)):
            raise ValueError(f"[{stream}] hourly needs 24 values >= 0")
        if not (isinstance(weekly, list) and len(weekly) == 7 and all(float(v) >= 0 for v in weekly)):
            raise ValueError(f"[{stream}] weekly needs 7 values >= 0 (Monday..Sunday)")
        if not any(hourly) or not any(weekly):
            raise ValueError(f"[{stream}] hourly and weekly must not be all zero")
        for key in SHARE_KEYS[stream]:
            if key in section and not 0.0 <= float(section[key]) <= 1.0:
                raise ValueError(f"[{stream}] {key} must be within 0..1, got {section[key]}")
        special_days(section)
    pay = scenario["payments"]
    if float(pay.get("amount_median_vnd", 0)) < 1000:
        raise ValueError("[payments] amount_median_vnd must be at least 1000")
    _validate_categories(pay.get("categories", {}))
    dossiers = scenario["dossiers"]
    for start, end in dossiers.get("office_hours", []):
        if not 0 <= float(start) < float(end) <= 24:
            raise ValueError(f"[dossiers] office_hours interval {[start, end]} must lie within 0..24")
    if float(dossiers.get("lifecycle_scale", 1.0)) <= 0:
        raise ValueError("[dossiers] lifecycle_scale must be > 0")
    holidays(dossiers)
    for campaign in scenario["identity"].get("campaigns", []):
        if float(campaign.get("boost", 1.0)) < 0:
            raise ValueError("[[identity.campaigns]] boost must be >= 0")
        hours = campaign.get("hours", [0, 24])
        if not (len(hours) == 2 and 0 <= hours[0] < hours[1] <= 24):
            raise ValueError(f"[[identity.campaigns]] hours {hours} must be [from, to) within 0..24")
    for code, settings in scenario.get("provinces", {}).items():
        unknown = set(settings) - PROVINCE_KEYS
        if unknown:
            raise ValueError(f"[provinces.{code}] unknown keys {sorted(unknown)}; known: {sorted(PROVINCE_KEYS)}")
        for key in ("failure_rate", "online_share", "late_rate", "paid_online_share", "vneid_auth_share",
                    "level2_share"):
            if key in settings and not 0.0 <= float(settings[key]) <= 1.0:
                raise ValueError(f"[provinces.{code}] {key} must be within 0..1")


PAYMENT_CATEGORIES = frozenset({"utility", "tuition", "hospital", "public_fee", "welfare"})


def _validate_categories(categories: dict[str, Any]) -> None:
    """[payments.categories.<name>]: share (of payment starts), amount_median_vnd, hourly, weekly, optional
    month_days (31) and months (12)."""
    unknown = set(categories) - PAYMENT_CATEGORIES
    if unknown:
        raise ValueError(f"[payments.categories] unknown {sorted(unknown)}; known: {sorted(PAYMENT_CATEGORIES)}")
    if sum(float(c.get("share", 0)) for c in categories.values()) > 1:
        raise ValueError("[payments.categories] shares must add up to at most 1")
    for name, cfg in categories.items():
        where = f"[payments.categories.{name}]"
        for key, size in (("hourly", 24), ("weekly", 7), ("month_days", 31), ("months", 12)):
            values = cfg.get(key, [1.0] * size)
            if not (isinstance(values, list) and len(values) == size and all(float(v) >= 0 for v in values)
                    and any(values)):
                raise ValueError(f"{where} {key} needs {size} values >= 0, not all zero")
        if not 0 <= float(cfg.get("share", -1)) <= 1 or float(cfg.get("amount_median_vnd", 0)) < 1000:
            raise ValueError(f"{where} needs share within 0..1 and amount_median_vnd >= 1000")
