"""From query results to what the report says: period values, targets, ranks, the summary sentence.

Pure functions over plain values, so every number in the report can be checked without a browser.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from pulse.report.formatting import vn_decimal, vn_pct
from schemas.provinces import provinces


@dataclass(frozen=True)
class KpiDefinition:
    name: str
    label: str
    lower_is_better: bool = False


KPIS = (
    KpiDefinition("online_dossier_rate", "Dossiers submitted online"),
    KpiDefinition("on_time_rate", "Results returned on time"),
    KpiDefinition("vneid_auth_rate", "Online dossiers signed in with VNeID"),
    KpiDefinition("online_payment_rate", "Fees paid online"),
    KpiDefinition("electronic_result_rate", "Results issued electronically"),
    KpiDefinition("satisfaction_rate", "Ratings of 4 or 5 stars"),
    KpiDefinition("full_process_offer_rate", "Eligible procedures offered full-process online"),
    KpiDefinition("overdue_open", "Open dossiers past their due time", lower_is_better=True),
    KpiDefinition("qr_success_rate", "VietQR payments that succeeded"),
    KpiDefinition("vneid_level2_share", "VNeID activations at level 2"),
)
KPI_BY_NAME = {kpi.name: kpi for kpi in KPIS}
HEADLINE_KPI = "online_dossier_rate"
# Decision 766/QĐ-TTg: five groups, 100 points (see docs/service-index.md).
SERVICE_GROUP_MAXIMA = {"publicity": 18, "progress": 20, "digitization": 22, "online_service": 22,
                        "satisfaction": 18}
SERVICE_GROUP_LABELS = {"publicity": "Publicity and transparency", "progress": "Progress and results",
                        "digitization": "Digitization of dossiers", "online_service": "Online service provision",
                        "satisfaction": "Satisfaction"}
NATIONAL_CODES = ("", "00")  # targets rows that hold for every province without one of its own


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class Target:
    value: float
    source: str
    national: bool


def targets_by_province(rows: list[tuple[str, str, float, str]]) -> dict[tuple[str, str], Target]:
    """(province, kpi) -> its target: the province's own row, else the national one."""
    national = {kpi: Target(value, source, True) for code, kpi, value, source in rows if code in NATIONAL_CODES}
    found: dict[tuple[str, str], Target] = {}
    for code in provinces():
        for kpi, target in national.items():
            found[(code, kpi)] = target
    for code, kpi, value, source in rows:
        if code not in NATIONAL_CODES:
            found[(code, kpi)] = Target(value, source, False)
    return found


def national_target(targets: dict[tuple[str, str], Target], kpi: str) -> Target | None:
    """The target for the whole country: a national row, or else the one value that all 34 provinces share
    (a national programme's target is often recorded once per province)."""
    own = [target for (code, name), target in targets.items() if name == kpi]
    if any(target.national for target in own):
        return next(target for target in own if target.national)
    if len(own) == len(provinces()) and len({target.value for target in own}) == 1:
        return Target(own[0].value, own[0].source, True)
    return None


def met(value: float | None, target: float | None, lower_is_better: bool) -> bool | None:
    if value is None or target is None:
        return None
    return value <= target if lower_is_better else value >= target


@dataclass(frozen=True)
class RankedProvince:
    rank: int
    code: str
    name: str
    value: float
    numerator: float
    denominator: float
    target: float | None


def ranking(totals: dict[tuple[str, str], tuple[float, float]], kpi: str,
            targets: dict[tuple[str, str], Target]) -> list[RankedProvince]:
    """Provinces with a value for the KPI, best first (ties share a rank, then by code)."""
    lower = KPI_BY_NAME[kpi].lower_is_better if kpi in KPI_BY_NAME else False
    valued = []
    for code, unit in provinces().items():
        num, den = totals.get((code, kpi), (0.0, 0.0))
        value = ratio(num, den)
        if value is not None:
            valued.append((value, code, unit.name, num, den))
    valued.sort(key=lambda item: (item[0] if lower else -item[0], item[1]))
    ranked: list[RankedProvince] = []
    for position, (value, code, name, num, den) in enumerate(valued, start=1):
        rank = ranked[-1].rank if ranked and ranked[-1].value == value else position
        target = targets.get((code, kpi))
        ranked.append(RankedProvince(rank, code, name, value, num, den, target.value if target else None))
    return ranked


@dataclass(frozen=True)
class KpiFigure:
    kpi: KpiDefinition
    value: float | None
    numerator: float
    denominator: float
    target: Target | None
    rank: int | None
    ranked: int

    @property
    def met(self) -> bool | None:
        return met(self.value, self.target.value if self.target else None, self.kpi.lower_is_better)


def kpi_figures(totals: dict[tuple[str, str], tuple[float, float]], targets: dict[tuple[str, str], Target],
                scope_codes: tuple[str, ...]) -> list[KpiFigure]:
    """Each KPI over the period for the scope (one province: with its rank; all: the national ratio)."""
    figures = []
    present = {kpi for _, kpi in totals}
    for kpi in KPIS:
        if kpi.name not in present:
            continue
        codes = scope_codes or tuple(provinces())
        num = sum(totals.get((code, kpi.name), (0.0, 0.0))[0] for code in codes)
        den = sum(totals.get((code, kpi.name), (0.0, 0.0))[1] for code in codes)
        ranks = ranking(totals, kpi.name, targets)
        rank = next((row.rank for row in ranks if row.code == scope_codes[0]), None) if len(scope_codes) == 1 \
            else None
        target = targets.get((scope_codes[0], kpi.name)) if len(scope_codes) == 1 else \
            national_target(targets, kpi.name)
        figures.append(KpiFigure(kpi, ratio(num, den), num, den, target, rank, len(ranks)))
    return figures


def summary_sentence(scope_name: str, figures: list[KpiFigure]) -> str:
    """'Bắc Ninh: online dossiers 87,0 %, target 80,0 %, rank 5 of 34.' from the headline KPI."""
    headline = next((figure for figure in figures if figure.kpi.name == HEADLINE_KPI), None)
    if headline is None or headline.value is None:
        return f"{scope_name}: no online-dossier figures for this period."
    parts = [f"{scope_name}: online dossiers {vn_pct(headline.value)}"]
    if headline.target is not None:
        parts.append(f"target {vn_pct(headline.target.value)}")
    if headline.rank is not None:
        parts.append(f"rank {headline.rank} of {headline.ranked}")
    return ", ".join(parts) + "."


def standing_sentences(figures: list[KpiFigure]) -> list[str]:
    """Plain lines on the other KPIs: which targets are met, which are not, by how much."""
    lines = []
    for figure in figures:
        if figure.kpi.name == HEADLINE_KPI or figure.value is None or figure.target is None:
            continue
        gap = figure.value - figure.target.value
        verdict = "meets" if figure.met else "misses"
        sign = "+" if gap >= 0 else "−"
        lines.append(f"{figure.kpi.label}: {vn_pct(figure.value)}, {verdict} the target of "
                     f"{vn_pct(figure.target.value)} ({sign}{vn_decimal(100 * abs(gap))} points).")
    return lines


@dataclass(frozen=True)
class ServiceIndexScore:
    month: date
    code: str
    name: str
    groups: dict[str, float | None]  # None: the group had nothing to score that month
    total: float | None
    rank: int | None
    ranked: int


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def service_index_scores(rows: list[tuple]) -> list[ServiceIndexScore]:
    """Rows of service_index_monthly, ranked by total within each month (ties share a rank; no total, no rank)."""
    names = provinces()
    by_month: dict[date, list[tuple]] = {}
    for row in rows:
        by_month.setdefault(row[0], []).append(row)
    scores = []
    for month, month_rows in sorted(by_month.items()):
        month_rows.sort(key=lambda row: (row[7] is None, -float(row[7] or 0), row[1]))
        ranked = sum(row[7] is not None for row in month_rows)
        previous: ServiceIndexScore | None = None
        for position, row in enumerate(month_rows, start=1):
            total = _number(row[7])
            rank = None if total is None else previous.rank if previous and previous.total == total else position
            unit = names.get(row[1])
            previous = ServiceIndexScore(month, row[1], unit.name if unit else row[1],
                                         dict(zip(SERVICE_GROUP_MAXIMA, map(_number, row[2:7]))), total, rank, ranked)
            scores.append(previous)
    return scores


@dataclass(frozen=True)
class QualityFigures:
    accepted: dict[str, int]
    dead_by_reason: dict[str, int]
    unattributed: int = 0

    @property
    def too_late(self) -> int:
        return self.dead_by_reason.get("too_late", 0)

    @property
    def dead_total(self) -> int:
        return sum(self.dead_by_reason.values())

    @property
    def dead_share(self) -> float | None:
        return ratio(self.dead_total, self.dead_total + sum(self.accepted.values()))


def quality_figures(accepted: dict[str, int], dead: list[tuple[str, str, int]]) -> QualityFigures:
    by_reason: dict[str, int] = {}
    for reason, _, count in dead:
        by_reason[reason] = by_reason.get(reason, 0) + count
    unattributed = sum(count for _, code, count in dead if not code)
    return QualityFigures(accepted, dict(sorted(by_reason.items(), key=lambda kv: -kv[1])), unattributed)


@dataclass
class VneidProgress:
    by_step: dict[str, int] = field(default_factory=dict)
    level2_activated: int = 0

    @property
    def activated(self) -> int:
        return self.by_step.get("activated", 0)


def vneid_progress(rows: list[tuple[str, int, int]]) -> VneidProgress:
    progress = VneidProgress()
    for step, level, count in rows:
        progress.by_step[step] = progress.by_step.get(step, 0) + count
        if step == "activated" and level == 2:
            progress.level2_activated += count
    return progress
