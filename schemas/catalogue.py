"""Reference data for the adoption KPIs: the procedure catalogue, which procedures each province offers
full-process online, and the KPI targets (all versioned CSVs under schemas/data/, see
docs/service-index.md for how they were shaped and where each figure comes from)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache

from schemas.provinces import DATA_DIR


@dataclass(frozen=True)
class CatalogueProcedure:
    code: str
    sector: str
    eligible_full_process: bool  # Decree 42/2022 Art. 11: can be offered full-process online at all
    fee_vnd: int  # 0: no fee
    deadline_working_days: float  # statutory handling time
    offer_rank: int | None  # provinces put eligible procedures full-process online in this order


@dataclass(frozen=True)
class Target:
    province_code: str
    kpi: str
    year: int
    target: float
    source: str


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA_DIR / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@cache
def procedures() -> tuple[CatalogueProcedure, ...]:
    return tuple(
        CatalogueProcedure(
            code=row["procedure_code"], sector=row["sector"], eligible_full_process=row["eligible_full_process"] == "1",
            fee_vnd=int(row["fee_vnd"]), deadline_working_days=float(row["deadline_working_days"]),
            offer_rank=int(row["offer_rank"]) if row["offer_rank"] else None,
        )
        for row in _rows("procedures.csv")
    )


@cache
def offered_full_process() -> dict[str, frozenset[str]]:
    """Per current province code: the procedure codes it offers full-process online (its first N eligible
    procedures in offer_rank order, N from procedure_offers.csv)."""
    ranked = sorted((p for p in procedures() if p.offer_rank is not None), key=lambda p: p.offer_rank)
    return {row["province_code"]: frozenset(p.code for p in ranked[:int(row["offered_full_process"])])
            for row in _rows("procedure_offers.csv")}


@cache
def targets() -> tuple[Target, ...]:
    return tuple(Target(row["province_code"], row["kpi"], int(row["year"]), float(row["target"]), row["source"])
                 for row in _rows("targets.csv"))
