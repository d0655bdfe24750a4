"""Regenerate schemas/data/procedures.csv and procedure_offers.csv (the simulated procedure catalogue).

Run once by hand (`python tools/make_procedures.py`); the CSVs are the versioned reference data, this script
only documents how they were shaped. Shape (docs/service-index.md, "Procedure catalogue"):
- 1,800 procedures, between Bắc Ninh's 1,731 and Hải Dương's 1,889 services (seeds 004, 003);
- 1,100 of them (61 %) eligible for full-process online service (assumption: the rest need the applicant
  in person or an on-site check, Decree 42/2022 Art. 11);
- about 45 % carry a fee (assumption), 10,000-500,000 VND;
- deadlines of 0.5-20 working days, short ones more common (assumption);
- each province offers full-process online the first N eligible procedures in `offer_rank` order.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "schemas" / "data"
PROCEDURES, ELIGIBLE = 1800, 1100
SECTORS = {  # sector -> share of the catalogue (assumption, shaped like a provincial catalogue)
    "justice": 0.12, "land": 0.08, "construction": 0.07, "industry_trade": 0.1, "education": 0.07, "health": 0.08,
    "labour": 0.08, "transport": 0.07, "business_registration": 0.08, "environment": 0.05, "agriculture": 0.07,
    "culture": 0.05, "home_affairs": 0.03, "finance": 0.03, "residence": 0.02,
}
DEADLINES = ((0.5, 0.1), (1, 0.15), (3, 0.2), (5, 0.2), (7, 0.1), (10, 0.12), (15, 0.08), (20, 0.05))
# Offered full-process procedures per current province: seed-based where a seed says something, else assumed.
SEEDED = {
    "31": (554, "Hải Dương: 581 of 1,889 services full-process (003_9082336df3e45210.txt), scaled to 1,800"),
    "96": (1045, "Bạc Liêu target 100% of eligible in 2025 (002_d85e83172f68241c.txt); 95% reached is an assumption"),
    "24": (660, "Bắc Ninh 1,348 of 1,731 at level 3-4 (004_28e890c47e16d73a.txt), Bắc Giang 217 fully electronic "
                "(000_ff2ab4ea65d8ec21.txt); 60% of eligible full-process is an assumption"),
}


def main() -> None:
    rng = random.Random(766)
    sectors = [s for s, share in SECTORS.items() for _ in range(round(share * PROCEDURES))][:PROCEDURES]
    sectors += ["justice"] * (PROCEDURES - len(sectors))
    rng.shuffle(sectors)
    eligible = set(rng.sample(range(PROCEDURES), ELIGIBLE))
    ranks = rng.sample(range(1, ELIGIBLE + 1), ELIGIBLE)
    days, weights = zip(*DEADLINES)
    rows = []
    for n, sector in enumerate(sectors):
        fee = rng.choice((10_000, 20_000, 30_000, 50_000, 100_000, 200_000, 500_000)) if rng.random() < 0.45 else 0
        rows.append({
            "procedure_code": f"1.{n + 1:06d}", "sector": sector, "eligible_full_process": int(n in eligible),
            "fee_vnd": fee, "deadline_working_days": rng.choices(days, weights)[0],
            "offer_rank": ranks.pop() if n in eligible else "",
        })
    with (DATA / "procedures.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with (DATA / "provinces.csv").open(encoding="utf-8") as handle:
        codes = [row["code"] for row in csv.DictReader(handle)]
    with (DATA / "procedure_offers.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["province_code", "offered_full_process", "as_of", "source"])
        for code in codes:
            count, source = SEEDED.get(code, (round(ELIGIBLE * rng.uniform(0.45, 0.9)),
                                              "assumption: 45-90% of eligible procedures (no seed figure)"))
            writer.writerow([code, count, "2025-12-31", source])


if __name__ == "__main__":
    main()
