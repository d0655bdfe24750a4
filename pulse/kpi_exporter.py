"""`pulse kpi-exporter`: the adoption KPIs of the running and the last complete local day, against their
targets, as Prometheus gauges (read from pulse.kpi_daily and pulse.targets every interval).

The alert PulseProvinceBehindKpiTarget (deploy/prometheus/rules/pulse-kpi-alerts.yml) reads these: a
province whose whole previous local day stayed below its target. Rate targets hold at every moment of the
year, so a day's value against the year's target is the province's position on its trajectory.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone

from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from pulse.settings import Settings
from pulse.store import open_warehouse

log = logging.getLogger(__name__)
ICT = timezone(timedelta(hours=7))  # Asia/Ho_Chi_Minh has had no daylight saving since 1975
# Each KPI with a target for the day's year, for the running (today) and the last complete (yesterday) local day.
ATTAINMENT_SQL = """
SELECT k.province_code, k.kpi, if(k.day = {today:Date}, 'today', 'yesterday') AS period,
       k.numerator, k.denominator, k.value, t.target
FROM pulse.kpi_daily AS k
INNER JOIN pulse.targets AS t ON t.province_code = k.province_code AND t.kpi = k.kpi AND t.year = toYear(k.day)
WHERE k.day IN ({today:Date}, {yesterday:Date})
ORDER BY 1, 2, 3"""

Row = tuple[str, str, str, int, int, float | None, float]


def local_days(now: datetime) -> tuple[date, date]:
    today = now.astimezone(ICT).date()
    return today, today - timedelta(days=1)


def read_attainment(settings: Settings, now: datetime) -> list[Row]:
    today, yesterday = local_days(now)
    warehouse = open_warehouse(settings, keep_open=False)
    try:
        with warehouse.lease() as client:
            return [tuple(row) for row in client.query(ATTAINMENT_SQL, parameters={
                "today": today, "yesterday": yesterday}).result_rows]
    finally:
        warehouse.close()


class KpiCollector(Collector):
    """Serves the rows of the last successful read; a failed read keeps the previous ones and counts."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.last_success = 0.0

    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ["province", "kpi", "period"]
        value = GaugeMetricFamily("pulse_kpi_value", "KPI of the local day (kpi_daily value)", labels=labels)
        denominator = GaugeMetricFamily("pulse_kpi_denominator", "KPI denominator of the local day", labels=labels)
        target = GaugeMetricFamily("pulse_kpi_target", "KPI target for the day's year (pulse.targets)", labels=labels)
        attainment = GaugeMetricFamily("pulse_kpi_attainment_ratio", "KPI value / target", labels=labels)
        for code, kpi, period, _, den, val, goal in self.rows:
            key = [code, kpi, period]
            denominator.add_metric(key, den)
            target.add_metric(key, goal)
            if val is not None:
                value.add_metric(key, val)
                if goal:
                    attainment.add_metric(key, val / goal)
        success = GaugeMetricFamily("pulse_kpi_last_read_timestamp_seconds",
                                    "wall-clock time of the last successful read of kpi_daily")
        success.add_metric([], self.last_success)
        yield from (value, denominator, target, attainment, success)

    def refresh(self, settings: Settings, now: datetime | None = None) -> None:
        try:
            self.rows = read_attainment(settings, now or datetime.now(timezone.utc))
            self.last_success = time.time()
        except Exception:  # a store briefly busy or down must not stop the exporter
            log.exception("reading kpi_daily failed; serving the previous values")


def run(settings: Settings, port: int, interval_s: float, iterations: int | None = None) -> KpiCollector:
    collector = KpiCollector()
    REGISTRY.register(collector)
    start_http_server(port, addr=settings.metrics_host)
    done = 0
    while iterations is None or done < iterations:
        collector.refresh(settings)
        done += 1
        time.sleep(interval_s)
    return collector
