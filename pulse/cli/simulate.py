"""`pulse simulate`: the three event streams, to Kafka or to a JSONL file."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from pulse.cli.base import main, settings_of
from pulse.cli.params import FAULTS, ISO_TIME_OR_NOW, PORT, POSITIVE_COUNT, POSITIVE_NUMBER


# A scenario file with bad content is reported by the scenario loader as ValueError / FileNotFoundError.
@main.command(expects=(ValueError, FileNotFoundError, RuntimeError))
@click.option("--scenario", default="default", show_default=True, help="Scenario name or TOML path.")
@click.option("--seed", type=int, default=None, help="Makes the output byte-for-byte reproducible.")
@click.option("--events", type=POSITIVE_COUNT, default=None, help="Number of events to generate.")
@click.option("--duration", "duration_s", type=POSITIVE_NUMBER, default=None, help="Seconds to run (Kafka output).")
@click.option("--rate", type=POSITIVE_NUMBER, default=500.0, show_default=True, help="Events per second (wall clock).")
@click.option("--start", type=ISO_TIME_OR_NOW, default=None, help="Event-time origin, ISO 8601 with offset, or `now`.")
@click.option("--speed", type=POSITIVE_NUMBER, default=1.0, show_default=True,
              help="Event-time seconds per wall second.")
@click.option("--faults", type=FAULTS, default=None, help="e.g. duplicate=0.01,late=0.02,malformed=0.005")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write JSONL instead of producing.")
@click.option("--metrics-port", type=PORT, default=6067, show_default=True, help="Prometheus /metrics port.")
@click.pass_context
def simulate(ctx: click.Context, scenario: str, seed: int | None, events: int | None, duration_s: float | None,
             rate: float, start: datetime | None, speed: float, faults: str | None, out: Path | None,
             metrics_port: int) -> None:
    """Generate the three event streams."""
    from pulse.simulate import SimulationOptions, run

    options = SimulationOptions(scenario=scenario, seed=seed, events=events, duration_s=duration_s, rate=rate,
                                start=start, speed=speed, faults=faults, out=out,
                                metrics_port=None if out else metrics_port)
    report = run(options, settings_of(ctx))
    click.echo(json.dumps(report), err=out is None)
