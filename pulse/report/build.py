"""Everything one report shows, read from ClickHouse and drawn: `build` returns a `ReportPage` for the template."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from clickhouse_connect.driver.client import Client

from pulse.errors import PulseError
from pulse.report import charts, queries
from pulse.report.content import (
    HEADLINE_KPI,
    KPI_BY_NAME,
    NATIONAL_CODES,
    KpiFigure,
    QualityFigures,
    RankedProvince,
    ServiceIndexScore,
    VneidProgress,
    kpi_figures,
    national_target,
    quality_figures,
    ranking,
    ratio,
    service_index_scores,
    standing_sentences,
    summary_sentence,
    targets_by_province,
    vneid_progress,
)
from schemas.provinces import UnknownProvince, code_map, provinces

PAYMENT_CATEGORIES = {"market": "Traditional markets", "utility": "Electricity and water bills",
                      "tuition": "Tuition", "hospital": "Hospital fees", "public_fee": "Public-service fees",
                      "welfare": "Welfare payouts"}
DEAD_LETTER_REASONS = {"malformed_json": "not valid JSON", "invalid": "failed validation",
                       "unknown_province": "unknown province code", "bad_qr": "VietQR payload does not match",
                       "too_large": "message too large", "too_late": "too late (behind the allowed lateness)",
                       "future_time": "event time in the future", "conflicting_duplicate": "conflicting duplicate"}
VNEID_STEPS = {"registered": "Registered", "approved": "Approved", "activated": "Activated in the app"}
TREND_KPIS = ("online_dossier_rate", "on_time_rate", "vneid_auth_rate")


class ReportError(PulseError, ValueError):
    """The report cannot be made: a bad request or a store without the tables it reads."""


@dataclass(frozen=True)
class ReportRequest:
    first: date
    last: date
    province: str | None = None  # any accepted code; legacy codes are mapped to their current unit

    def validated(self) -> ReportRequest:
        if self.last < self.first:
            raise ReportError(f"--to {self.last} is before --from {self.first}")
        if self.province is None:
            return self
        try:
            return ReportRequest(self.first, self.last, code_map()[self.province])
        except KeyError:
            raise ReportError(str(UnknownProvince(self.province))) from None


@dataclass
class ReportPage:
    request: ReportRequest
    scope_name: str
    generated_at: datetime
    summary: str
    standing: list[str]
    figures: list[KpiFigure]
    headline_ranking: list[RankedProvince]
    on_time_by_code: dict[str, float]
    index_scores: list[ServiceIndexScore]
    index_for_scope: ServiceIndexScore | None
    categories: list[tuple[str, str, int, int, int, float | None]]
    vneid: VneidProgress
    quality: QualityFigures
    targets_on_record: list[tuple[str, str, str, float, str]]
    charts: dict[str, str] = field(default_factory=dict)


def _scope(request: ReportRequest, database: str) -> queries.Scope:
    if request.province is None:
        return queries.Scope(request.first, request.last, database)
    legacy = tuple(code for code in provinces()[request.province].legacy_codes if code != request.province)
    return queries.Scope(request.first, request.last, database, (request.province,), legacy)


def check_tables(client: Client, database: str) -> None:
    needed = (*queries.KPI_TABLES, *queries.RAW_TABLES.values(), *queries.WINDOW_TABLES, "dead_letters")
    missing = [name for name in needed if name not in queries.existing_tables(client, database)]
    if missing:
        raise ReportError(f"the store has no table {', '.join(f'{database}.{name}' for name in missing)}: "
                          "apply the migrations first (the worker does on start)")


def build(client: Client, database: str, request: ReportRequest) -> ReportPage:
    request = request.validated()
    check_tables(client, database)
    scope = _scope(request, database)
    totals = queries.kpi_totals(client, scope)
    target_rows = queries.targets(client, scope, request.last.year)
    targets = targets_by_province(target_rows)
    figures = kpi_figures(totals, targets, scope.provinces)
    scope_name = provinces()[request.province].name if request.province else "All 34 provinces"
    index_scores = service_index_scores(queries.service_index(client, scope))
    latest_month = max((score.month for score in index_scores), default=None)
    index_for_scope = next((s for s in index_scores if s.month == latest_month and s.code == request.province), None)
    page = ReportPage(
        request=request, scope_name=scope_name, generated_at=datetime.now(timezone.utc),
        summary=summary_sentence(scope_name, figures), standing=standing_sentences(figures), figures=figures,
        headline_ranking=ranking(totals, HEADLINE_KPI, targets),
        on_time_by_code={row.code: row.value for row in ranking(totals, "on_time_rate", targets)},
        index_scores=[s for s in index_scores if s.month == latest_month], index_for_scope=index_for_scope,
        categories=_categories(queries.payment_categories(client, scope)),
        vneid=vneid_progress(queries.vneid_steps(client, scope)),
        quality=quality_figures(queries.accepted_events(client, scope), queries.dead_letters(client, scope)),
        targets_on_record=_targets_on_record(target_rows, request.province),
    )
    page.charts = _charts(page, queries.kpi_days(client, scope), queries.daily_volumes(client, scope), targets)
    return page


def _categories(rows: list[tuple]) -> list[tuple[str, str, int, int, int, float | None]]:
    """(category, label, payments, successful, value VND, success rate), biggest first."""
    return sorted(((cat, PAYMENT_CATEGORIES.get(cat, cat), int(n), int(ok), int(value), ratio(ok, n))
                   for cat, n, ok, value in rows), key=lambda row: -row[3])


def _targets_on_record(rows: list[tuple[str, str, float, str]], province: str | None) -> list[tuple]:
    names = provinces()
    wanted = [row for row in rows if row[0] in (province, *NATIONAL_CODES)]
    return [(names[code].name if code in names else "national", kpi,
             KPI_BY_NAME[kpi].label if kpi in KPI_BY_NAME else kpi, target, source)
            for code, kpi, target, source in wanted]


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def _charts(page: ReportPage, kpi_days: dict, volumes: dict, targets: dict) -> dict[str, str]:
    request = page.request
    days = _days(request.first, request.last)
    drawn = {}
    if page.headline_ranking:
        line = targets.get((request.province, HEADLINE_KPI)) if request.province else None
        line = line or national_target(targets, HEADLINE_KPI)
        drawn["ranking"] = charts.ranking_chart(page.headline_ranking, request.province,
                                                line.value if line else None, "Dossiers submitted online, by province")
    series = {KPI_BY_NAME[kpi].label: [ratio(*kpi_days[kpi][day]) if day in kpi_days.get(kpi, {}) else None
                                       for day in days] for kpi in TREND_KPIS if kpi in kpi_days}
    trend_targets = {KPI_BY_NAME[f.kpi.name].label: f.target.value for f in page.figures
                     if f.kpi.name in TREND_KPIS and f.target is not None}
    if series:
        drawn["trend"] = charts.trend_chart(days, series, trend_targets, "Daily rates (dashed: target)", "trend")

    def volume(name: str) -> list[int]:
        return [volumes.get(day, {}).get(name, 0) for day in days]
    drawn["dossiers"] = charts.volume_chart(days, {"online": volume("submitted_online"),
                                                   "at the counter": volume("submitted_offline")},
                                            "Dossiers submitted per day", "dossiers")
    drawn["payments"] = charts.volume_chart(days, {"successful": volume("success_count"),
                                                   "failed": [t - s for t, s in zip(volume("tx_count"),
                                                                                    volume("success_count"))]},
                                            "VietQR payments per day", "payments")
    drawn["vneid"] = charts.cumulative_chart(days, {"activations": volume("activations"),
                                                    "of which level 2": volume("level2_activations")},
                                             "VNeID activations since the start of the period", "vneid")
    if page.index_for_scope is not None:
        drawn["service_index"] = charts.service_index_chart(page.index_for_scope)
    if page.categories:
        drawn["categories"] = charts.category_chart([row[:1] + row[2:5] for row in page.categories],
                                                    PAYMENT_CATEGORIES)
    return drawn
