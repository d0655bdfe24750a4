"""`pulse kpi-exporter`: today's and yesterday's KPIs as Prometheus gauges."""
from __future__ import annotations

import click

from pulse.cli.base import main, settings_of


@main.command("kpi-exporter")
@click.option("--port", type=int, envvar="PULSE_KPI_METRICS_PORT", default=6068, show_default=True,
              help="Port of the /metrics endpoint (PULSE_KPI_METRICS_PORT).")
@click.option("--interval", "interval_s", type=float, default=60.0, show_default=True,
              help="Seconds between two reads of pulse.kpi_daily.")
@click.pass_context
def kpi_exporter(ctx: click.Context, port: int, interval_s: float) -> None:
    """Serve today's and yesterday's KPIs (local days) against their targets as Prometheus gauges."""
    from pulse.kpi_exporter import run

    try:
        run(settings_of(ctx), port, interval_s)
    except KeyboardInterrupt:
        pass
