from __future__ import annotations

import pytest

from schemas.provinces import UnknownProvince, code_map, current_code, provinces


def test_thirty_four_current_units_and_every_legacy_code_mapped() -> None:
    assert len(provinces()) == 34
    assert len(code_map()) == 63  # every current unit kept the code of one former province
    assert len([code for code in code_map() if code not in provinces()]) == 63 - 34
    assert set(code_map().values()) == set(provinces())


def test_merged_units_map_to_the_unit_that_hosts_the_new_centre() -> None:
    assert current_code("24") == "24"  # Bắc Giang's code became Bắc Ninh's
    assert current_code("27") == "24"  # old Bắc Ninh
    assert current_code("22") == "22"  # Quảng Ninh unchanged


def test_unknown_code_raises() -> None:
    with pytest.raises(UnknownProvince, match="99"):
        current_code("99")
