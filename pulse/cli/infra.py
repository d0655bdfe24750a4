"""`pulse infra up|down|fetch|status`: the local real services."""
from __future__ import annotations

import click

from pulse import infra, kafka_cluster
from pulse.cli.base import main, settings_of


@main.group("infra")
def infra_group() -> None:
    """Start, stop and show the local real services (Kafka; Prometheus and Alertmanager when installed)."""


@infra_group.command("up")
@click.option("--no-monitoring", is_flag=True, help="Start Kafka only.")
@click.option("--brokers", type=click.IntRange(1, 9), default=1, show_default=True,
              help="Kafka nodes; 3 or more: a replicated cluster (replication 3, min.insync.replicas 2) on ports "
                   "9092, 9192, 9292, ...")
@click.pass_context
def infra_up(ctx: click.Context, no_monitoring: bool, brokers: int) -> None:
    """Start Kafka (KRaft) and, when installed, Prometheus and Alertmanager; create the topics. Idempotent."""
    settings = settings_of(ctx)
    started = (infra.up(settings, with_monitoring=not no_monitoring) if brokers == 1 else
               kafka_cluster.up(settings, brokers, with_monitoring=not no_monitoring))
    for line in started:
        click.echo(line)


@infra_group.command("down")
@click.option("--purge", is_flag=True, help="Also delete Kafka logs, metrics and the embedded ClickHouse store.")
@click.pass_context
def infra_down(ctx: click.Context, purge: bool) -> None:
    """Stop what `infra up` started (found through the pid files in the state directory)."""
    settings = settings_of(ctx)
    for line in [*kafka_cluster.down(settings, purge=purge), *infra.down(settings, purge=purge)]:
        click.echo(line)


@infra_group.command("fetch")
def infra_fetch() -> None:
    """Download the Kafka broker jars from Maven Central (done by `up` when missing)."""
    click.echo(f"Kafka jars in {infra.ensure_kafka_jars()}")


@infra_group.command("status")
@click.pass_context
def infra_status(ctx: click.Context) -> None:
    """Show whether each local service is up, with its address and pid."""
    settings = settings_of(ctx)
    for line in [*infra.status(settings), *kafka_cluster.status(settings)]:
        click.echo(line)
