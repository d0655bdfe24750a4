"""`pulse infra up|down|fetch|status`: the local real services."""
from __future__ import annotations

import click

from pulse import infra
from pulse.cli.base import main, settings_of


@main.group("infra")
def infra_group() -> None:
    """Start, stop and show the local real services (Kafka; Prometheus and Alertmanager when installed)."""


@infra_group.command("up")
@click.option("--no-monitoring", is_flag=True, help="Start Kafka only.")
@click.pass_context
def infra_up(ctx: click.Context, no_monitoring: bool) -> None:
    """Start Kafka (KRaft) and, when installed, Prometheus and Alertmanager; create the topics. Idempotent."""
    for line in infra.up(settings_of(ctx), with_monitoring=not no_monitoring):
        click.echo(line)


@infra_group.command("down")
@click.option("--purge", is_flag=True, help="Also delete Kafka logs, metrics and the embedded ClickHouse store.")
@click.pass_context
def infra_down(ctx: click.Context, purge: bool) -> None:
    """Stop what `infra up` started (found through the pid files in the state directory)."""
    for line in infra.down(settings_of(ctx), purge=purge):
        click.echo(line)


@infra_group.command("fetch")
def infra_fetch() -> None:
    """Download the Kafka broker jars from Maven Central (done by `up` when missing)."""
    click.echo(f"Kafka jars in {infra.ensure_kafka_jars()}")


@infra_group.command("status")
@click.pass_context
def infra_status(ctx: click.Context) -> None:
    """Show whether each local service is up, with its address and pid."""
    for line in infra.status(settings_of(ctx)):
        click.echo(line)
