"""The 34 provincial units in force since 2025-07-01, and the 63 legacy codes that map onto them."""
from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from schemas.errors import PulseError

DATA_DIR = Path(__file__).parent / "data"


class Province(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    name_ascii: str
    region: str
    population_millions: float
    unit_type: str
    legacy_codes: tuple[str, ...]


class UnknownProvince(PulseError, KeyError):
    """A province code that is neither a current nor a legacy code."""

    def __str__(self) -> str:
        return f"unknown province code {self.args[0]!r}"


def _read_csv(name: str) -> list[dict[str, str]]:
    with (DATA_DIR / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@cache
def provinces() -> dict[str, Province]:
    """Current units by 2-digit code, in code order."""
    units = (
        Province(
            code=row["code"],
            name=row["name"],
            name_ascii=row["name_ascii"],
            region=row["region"],
            population_millions=float(row["population_millions"]),
            unit_type=row["unit_type"],
            legacy_codes=tuple(row["formed_from_legacy_codes"].split(";")),
        )
        for row in _read_csv("provinces.csv")
    )
    return {unit.code: unit for unit in sorted(units, key=lambda unit: unit.code)}


@cache
def code_map() -> dict[str, str]:
    """Every accepted code (current or legacy) to its current unit's code."""
    mapping = {row["legacy_code"]: row["current_code"] for row in _read_csv("provinces_legacy.csv")}
    mapping.update({code: code for code in provinces()})
    return mapping


def current_code(code: str) -> str:
    """The current unit for a current or legacy code; UnknownProvince otherwise."""
    try:
        return code_map()[code]
    except KeyError:
        raise UnknownProvince(code) from None
