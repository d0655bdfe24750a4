"""The simulated world: provinces weighted by population, their markets and merchants, banks, procedures."""
from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate

from schemas.banks import BANKS, MARKET_SHARE_WEIGHTS
from schemas.provinces import code_map, provinces
from simulators.scenario import province_setting

PROCEDURES = 100
# Statutory deadlines (office hours) as commonly set for district/provincial procedures: from half a day to
# 15 working days, shorter ones more common.
DEADLINE_HOURS = (4, 8, 24, 40, 56, 80, 120)
DEADLINE_WEIGHTS = (0.12, 0.18, 0.2, 0.18, 0.12, 0.12, 0.08)
# Procedure popularity follows a Zipf-like law: a few (birth registration, residence, land) dominate.
POPULARITY_EXPONENT = 0.7


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    market_id: str
    province_code: str
    bank_bin: str
    account: str
    static_qr: str | None  # printed sticker for static-QR merchants


@dataclass(frozen=True)
class Procedure:
    code: str
    full_process: bool
    deadline_hours: float  # office hours allowed by law


class World:
    def __init__(self, scenario: dict, rng: random.Random, encode_qr) -> None:  # noqa: ANN001
        self.scenario = scenario
        units = provinces()
        self.codes = list(units)
        unknown = set(scenario.get("provinces", {})) - set(self.codes)
        if unknown:
            raise ValueError(f"[provinces.*] must use current 2-digit codes; unknown: {sorted(unknown)}")
        self.legacy_codes = {code: [c for c, cur in code_map().items() if cur == code and c != code]
                             for code in self.codes}
        # Codes of birth places before 2025 (the first digits of a citizen number), by current unit.
        self.birth_codes = {code: list(units[code].legacy_codes) or [code] for code in self.codes}
        self.population = [units[c].population_millions for c in self.codes]
        self.payment_weights = [
            p * province_setting(scenario, c, "cashless", 1.0) for c, p in zip(self.codes, self.population)
        ]
        self.dossier_weights = list(self.population)
        self.identity_weights = [
            p * province_setting(scenario, c, "identity_boost", 1.0) for c, p in zip(self.codes, self.population)
        ]
        self.bank_bins = sorted(BANKS)
        self.bank_weights = [MARKET_SHARE_WEIGHTS.get(b, 0.1) for b in self.bank_bins]
        self.bank_cum = list(accumulate(self.bank_weights))
        self.merchants = self._merchants(rng, encode_qr)
        self.procedures = self._procedures(rng, float(scenario["dossiers"].get("full_process_share", 0.35)))
        self.procedure_weights = [1.0 / (rank + 1) ** POPULARITY_EXPONENT for rank in range(len(self.procedures))]
        self.procedure_cum = list(accumulate(self.procedure_weights))

    def _merchants(self, rng: random.Random, encode_qr) -> dict[str, list[Merchant]]:  # noqa: ANN001
        pay = self.scenario["payments"]
        by_province: dict[str, list[Merchant]] = {}
        digits = "0123456789"
        for code, population in zip(self.codes, self.population):
            markets = max(2, round(population * pay["markets_per_million"]))
            merchants = []
            for m in range(markets):
                market_id = f"MKT-{code}-{m:03d}"
                for n in range(pay["merchants_per_market"]):
                    bank_bin = rng.choices(self.bank_bins, cum_weights=self.bank_cum)[0]
                    account = "".join(rng.choice(digits) for _ in range(rng.choice((10, 12, 13))))
                    static = rng.random() >= pay["dynamic_share"]
                    merchants.append(Merchant(
                        merchant_id=f"{market_id}-{n:02d}", market_id=market_id, province_code=code,
                        bank_bin=bank_bin, account=account,
                        static_qr=encode_qr(bank_bin, account) if static else None,
                    ))
            by_province[code] = merchants
        return by_province

    @staticmethod
    def _procedures(rng: random.Random, full_process_share: float) -> list[Procedure]:
        """PROCEDURES procedures, exactly round(share x PROCEDURES) of them offered full-process online."""
        full = set(rng.sample(range(PROCEDURES), round(full_process_share * PROCEDURES)))
        deadlines = rng.choices(DEADLINE_HOURS, DEADLINE_WEIGHTS, k=PROCEDURES)
        return [Procedure(f"TTHC-{n:04d}", n in full, deadlines[n]) for n in range(PROCEDURES)]
