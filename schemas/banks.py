"""Vietnamese bank BINs (NAPAS acquirer ids) and simulation weights for choosing among them."""
from __future__ import annotations

import csv
from pathlib import Path

from pydantic import BaseModel, ConfigDict

BANKS_CSV = Path(__file__).parent / "data" / "banks.csv"


class Bank(BaseModel):
    model_config = ConfigDict(frozen=True)

    bin: str
    short_name: str
    name: str


def _load(path: Path = BANKS_CSV) -> dict[str, Bank]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [Bank.model_validate(row) for row in csv.DictReader(handle)]
    return {row.bin: row for row in rows}


BANKS: dict[str, Bank] = _load()


def bank(bin: str) -> Bank:  # "bin" is the domain term; the builtin is not needed here
    """The bank with this 6-digit BIN; KeyError when the BIN is not in banks.csv."""
    try:
        return BANKS[bin]
    except KeyError:
        raise KeyError(f"unknown bank BIN {bin!r}") from None


# Rough shares of retail transfer volume, used only to make simulated traffic look realistic.
# The big four state-linked banks plus the large private retail banks dominate QR transfers;
# mid-size retail banks get a visible share; branches of foreign banks and finance companies
# almost never appear but stay non-zero so every BIN can show up in a long run.
_MAJOR_WEIGHTS: dict[str, float] = {
    "970436": 13.0,  # Vietcombank
    "970422": 12.0,  # MBBank
    "970415": 10.0,  # VietinBank
    "970418": 10.0,  # BIDV
    "970407": 9.0,  # Techcombank
    "970405": 8.0,  # Agribank
    "970432": 6.0,  # VPBank
    "970416": 5.5,  # ACB
    "970403": 4.5,  # Sacombank
    "970423": 4.5,  # TPBank
}
_MIDSIZE_WEIGHTS: dict[str, float] = {
    "970437": 1.8,  # HDBank
    "970441": 1.6,  # VIB
    "970443": 1.5,  # SHB
    "970426": 1.4,  # MSB
    "970449": 1.3,  # LPBank
    "970448": 1.2,  # OCB
    "970440": 1.0,  # SeABank
    "970431": 0.9,  # Eximbank
    "970454": 0.6,  # VietCapitalBank
    "970428": 0.6,  # NamABank
    "970425": 0.5,  # ABBank
    "970412": 0.5,  # PVcomBank
    "970409": 0.4,  # BacABank
    "970452": 0.4,  # KienLongBank
    "970429": 0.4,  # SCB
    "970419": 0.3,  # NCB
    "970400": 0.3,  # SaigonBank
}
_OTHER_WEIGHT = 0.1


def _market_share_weights() -> dict[str, float]:
    raw = {bin_: _MAJOR_WEIGHTS.get(bin_) or _MIDSIZE_WEIGHTS.get(bin_) or _OTHER_WEIGHT for bin_ in BANKS}
    total = sum(raw.values())
    return {bin_: weight / total for bin_, weight in raw.items()}


# Every BIN in BANKS, weights summing to 1.0 (usable directly with random.choices).
MARKET_SHARE_WEIGHTS: dict[str, float] = _market_share_weights()
