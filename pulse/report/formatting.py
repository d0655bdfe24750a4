"""Numbers as a Vietnamese reader writes them: `.` groups thousands, `,` marks decimals, a space before `%`."""
from __future__ import annotations

from datetime import date

MISSING = "–"


def vn_int(number: float | int | None) -> str:
    """1234567 -> '1.234.567'."""
    if number is None:
        return MISSING
    return f"{round(number):,}".replace(",", ".")


def vn_decimal(number: float | None, digits: int = 1) -> str:
    """1234.56 -> '1.234,6'."""
    if number is None:
        return MISSING
    text = f"{number:,.{digits}f}"
    return text.replace(",", "\0").replace(".", ",").replace("\0", ".")


def vn_pct(fraction: float | None, digits: int = 1) -> str:
    """0.875 -> '87,5 %' (with a no-break space); whole numbers keep their decimal so columns line up ('80,0 %')."""
    if fraction is None:
        return MISSING
    return f"{vn_decimal(100 * fraction, digits)}\u00a0%"  # no-break space: the sign never wraps alone


def vn_money_millions(vnd: float | int | None) -> str:
    """Amounts in millions of đồng, one decimal: 12345678 -> '12,3 tr ₫'."""
    if vnd is None:
        return MISSING
    return f"{vn_decimal(vnd / 1e6, 1)}\u00a0tr\u00a0₫"


def vn_date(day: date) -> str:
    """Dates as written in Vietnam: 05/01/2026."""
    return day.strftime("%d/%m/%Y")
