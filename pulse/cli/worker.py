"""`pulse worker`: the stream worker, supervised (restarted when it dies) unless --no-restart."""
from __future__ import annotations

import sys

import click

from pulse.cli.base import main, settings_of


@main.command()
@click.option("--loglevel", default="warning", show_default=True, help="Faust log level.",
              type=click.Choice(["debug", "info", "warning", "error", "critical"], case_sensitive=False))
@click.option("--no-restart", is_flag=True, help="Run the Faust worker in this process, without a supervisor.")
@click.pass_context
def worker(ctx: click.Context, loglevel: str, no_restart: bool) -> None:
    """Run the stream worker (all agents) until SIGTERM; restarted if it dies.

    The supervisor restarts a dead worker process with backoff, except after exit status 78 (the
    configuration was refused: Kafka credentials, ClickHouse settings), which it passes on. On SIGTERM it
    waits up to 25 s for the batch in flight, then kills the worker (compose grants 35 s).
    """
    from pulse.supervise import EXIT_CONFIG, Supervisor

    if no_restart:
        from pulse.kafka_security import KafkaLoginRefused, KafkaSecurityError, KafkaUnreachable
        from pulse.settings import ClickHouseSettingsError
        from pulse.worker import run

        try:
            run(settings_of(ctx), loglevel=loglevel)
        except (KafkaSecurityError, KafkaLoginRefused, ClickHouseSettingsError) as error:
            # A distinct exit code, so the supervisor gives up instead of restarting into the same refusal.
            click.echo(f"Error: {error}", err=True)
            sys.exit(EXIT_CONFIG)
        except KafkaUnreachable as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(1)  # restarted with backoff: a broker that is down now may be back soon
        return

    command = [sys.executable, "-m", "pulse.cli", "worker", "--no-restart", "--loglevel", loglevel]
    sys.exit(Supervisor(command, env=settings_of(ctx).child_env()).run())
