"""Bank BIN table and simulation weights."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.banks import BANKS, BANKS_CSV, MARKET_SHARE_WEIGHTS, Bank, bank

SHARED_BANKS = Path(__file__).resolve().parents[3] / "shared" / "domain" / "banks.csv"

MAJOR = {
    "970436": "Vietcombank",
    "970415": "VietinBank",
    "970418": "BIDV",
    "970405": "Agribank",
    "970407": "Techcombank",
    "970422": "MBBank",
    "970416": "ACB",
    "970432": "VPBank",
    "970403": "Sacombank",
    "970423": "TPBank",
}


def test_every_csv_row_is_loaded() -> None:
    with BANKS_CSV.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(BANKS) == len(rows) == 56
    assert [row["bin"] for row in rows] == list(BANKS)


def test_bins_are_six_digit_napas_bins() -> None:
    for bin_, entry in BANKS.items():
        assert entry.bin == bin_
        assert len(bin_) == 6 and bin_.isdigit() and bin_.startswith("9704")
        assert entry.short_name and entry.name


def test_lookup() -> None:
    vietcombank = bank("970436")
    assert vietcombank == Bank(bin="970436", short_name="Vietcombank", name="Ngân hàng TMCP Ngoại Thương Việt Nam")


def test_unknown_bin_raises_key_error() -> None:
    with pytest.raises(KeyError, match="970499"):
        bank("970499")


def test_bank_is_frozen() -> None:
    with pytest.raises(ValidationError):
        bank("970436").short_name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(("bin_", "short_name"), sorted(MAJOR.items()))
def test_major_bins_match_csv(bin_: str, short_name: str) -> None:
    assert bank(bin_).short_name == short_name


def test_weights_cover_every_bank_and_sum_to_one() -> None:
    assert MARKET_SHARE_WEIGHTS.keys() == BANKS.keys()
    assert all(weight > 0 for weight in MARKET_SHARE_WEIGHTS.values())
    assert math.isclose(sum(MARKET_SHARE_WEIGHTS.values()), 1.0)


def test_major_banks_outweigh_all_others() -> None:
    lightest_major = min(MARKET_SHARE_WEIGHTS[bin_] for bin_ in MAJOR)
    heaviest_other = max(weight for bin_, weight in MARKET_SHARE_WEIGHTS.items() if bin_ not in MAJOR)
    assert lightest_major > 2 * heaviest_other
    assert sum(MARKET_SHARE_WEIGHTS[bin_] for bin_ in MAJOR) > 0.75


@pytest.mark.skipif(not SHARED_BANKS.is_file(), reason="no ../shared checkout beside the repository")
def test_package_copy_matches_shared_reference() -> None:
    assert BANKS_CSV.read_bytes() == SHARED_BANKS.read_bytes()
