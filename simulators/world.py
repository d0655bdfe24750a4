"""The simulated world: provinces weighted by population, their markets and merchants, banks, procedures."""
from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate

from schemas.banks import BANKS, MARKET_SHARE_WEIGHTS
from schemas.catalogue import offered_full_process
from schemas.catalogue import procedures as catalogue_procedures
from schemas.provinces import code_map, provinces
from simulators.scenario import province_setting

# Office hours in a working day (07:30-11:30, 13:00-17:00): a deadline of N working days is N x 8 office hours.
OFFICE_HOURS_PER_DAY = 8.0
# Procedure popularity follows a Zipf-like law: a few (birth registration, residence, land) dominate.
POPULARITY_EXPONENT = 0.7
# Non-market payment categories and their payees per province (assumption: a few per province).
PAYEES_PER_PROVINCE = {"utility": 3, "tuition": 40, "hospital": 8, "public_fee": 2, "welfare": 10}
_PAYEE_PREFIX = {"utility": "UTIL", "tuition": "SCH", "hospital": "HOSP", "public_fee": "KBNN", "welfare": "BTXH"}


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
    sector: str
    fee_vnd: int
    deadline_hours: float  # office hours allowed by law (working days x 8)


class World:
    def __init__(self, scenario: dict, rng: random.Random, encode_qr) -> None:
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
        self.procedures = self._procedures(rng)
        self.procedure_weights = [1.0 / (rank + 1) ** POPULARITY_EXPONENT for rank in range(len(self.procedures))]
        self.procedure_cum = list(accumulate(self.procedure_weights))
        # Per province: the procedure codes it offers full-process online (schemas/data/procedure_offers.csv).
        self.full_process = offered_full_process()
        self.payees = self._payees(rng)

    def _merchants(self, rng: random.Random, encode_qr) -> dict[str, list[Merchant]]:
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
    def _procedures(rng: random.Random) -> list[Procedure]:
        """The catalogue's procedures (schemas/data/procedures.csv) in a seeded popularity order."""
        procedures = [Procedure(p.code, p.sector, p.fee_vnd, p.deadline_working_days * OFFICE_HOURS_PER_DAY)
                      for p in catalogue_procedures()]
        rng.shuffle(procedures)
        return procedures

    def _payees(self, rng: random.Random) -> dict[str, dict[str, list[Merchant]]]:
        """Per category and province: who non-market payments go to (dynamic QR with the bill's amount)."""
        digits = "0123456789"
        payees: dict[str, dict[str, list[Merchant]]] = {}
        for category, count in PAYEES_PER_PROVINCE.items():
            payees[category] = {}
            for code in self.codes:
                payees[category][code] = [
                    Merchant(merchant_id=f"{_PAYEE_PREFIX[category]}-{code}-{n:03d}",
                             market_id=f"{_PAYEE_PREFIX[category]}-{code}", province_code=code,
                             bank_bin=rng.choices(self.bank_bins, cum_weights=self.bank_cum)[0],
                             account="".join(rng.choice(digits) for _ in range(12)), static_qr=None)
                    for n in range(count)]
        return payees
