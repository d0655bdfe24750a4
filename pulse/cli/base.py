"""The `pulse` group and the one place where failures become messages.

Every command runs inside `expected_failures` (through `PulseGroup.invoke`): a `PulseError` is printed as
`Error: <its message>`, with exit status 2 when it is a `PulseUsageError` (bad input) and 1 otherwise (the
world refused: a broker down, a store busy); a library's timeout, connection or Kafka error as the first line
of its message, exit status 1. Click's own usage errors keep click's output and exit status 2.
Anything else is a bug and keeps its traceback. A command whose library reports bad input with a plain
ValueError (scenario files, the simulator's options) names it in `expects=`; nothing catches `Exception`.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from pulse.errors import PulseError, PulseUsageError
from pulse.settings import Settings, get_settings, with_overrides

Failure = type[BaseException]


def _kafka_errors() -> tuple[Failure, ...]:
    # kafka-python's errors describe a broker that is down or refused us: the world, not a bug.
    from kafka.errors import KafkaError

    return (KafkaError,)


def one_line(error: BaseException) -> str:
    """The first line of the error's message (library messages may carry a server's stack trace)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@contextmanager
def expected_failures(expects: tuple[Failure, ...] = ()) -> Iterator[None]:
    """Turn expected failures into click errors (one line); let everything else through with its traceback."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise  # click's own: usage errors, ctx.exit(), Ctrl-C
    except PulseUsageError as error:
        raise click.UsageError(str(error)) from None
    except PulseError as error:
        # The project's own message, written for the user: shown whole (one line, unless it quotes a tool's
        # output on purpose, as a failed Maven fetch does).
        raise click.ClickException(str(error)) from None
    except (TimeoutError, ConnectionError, *_kafka_errors(), *expects) as error:
        raise click.ClickException(one_line(error)) from None


class PulseCommand(click.Command):
    """A command that may name the extra exception types its library uses for expected failures."""

    def __init__(self, *args: Any, expects: tuple[Failure, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expects = expects

    def invoke(self, ctx: click.Context) -> Any:
        with expected_failures(self.expects):
            return super().invoke(ctx)


class PulseGroup(click.Group):
    """Subcommands are PulseCommands; the whole invocation (groups from other modules too) runs inside the
    wrapper, so a PulseError from any command is one line."""

    command_class = PulseCommand

    def invoke(self, ctx: click.Context) -> Any:
        with expected_failures():
            return super().invoke(ctx)


PulseGroup.group_class = PulseGroup


def settings_of(ctx: click.Context) -> Settings:
    """The Settings built by `main` from the environment and the global flags."""
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Settings) else get_settings()


def _quiet_libraries() -> None:
    # kafka-python warns about its own slow event-loop turns on a busy 2-core box; noise for users.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    # Their retry warnings repeat what the one-line error then says. (urllib3-future, where installed,
    # resets the level of its "urllib3" logger when imported, hence the module's own logger.)
    for name in ("urllib3.connectionpool", "clickhouse_connect"):
        logging.getLogger(name).setLevel(logging.ERROR)


@click.group(cls=PulseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="adoption-pulse", prog_name="pulse",
                      message="%(prog)s %(version)s")
@click.option("--kafka-bootstrap", envvar="PULSE_KAFKA_BOOTSTRAP", default=None, help="Kafka bootstrap servers.")
@click.option("--clickhouse-url", envvar="PULSE_CLICKHOUSE_URL", default=None,
              help="chdb:///path (embedded) or http[s]://user:pass@host:8123/pulse.")
@click.option("--state-dir", envvar="PULSE_STATE_DIR", default=None, help="Where local state and logs go.")
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
@click.pass_context
def main(ctx: click.Context, kafka_bootstrap: str | None, clickhouse_url: str | None, state_dir: str | None,
         verbose: bool) -> None:
    """adoption-pulse: live telemetry of cashless payments, online dossiers and VNeID activations."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        _quiet_libraries()
    ctx.obj = with_overrides(kafka_bootstrap=kafka_bootstrap, clickhouse_url=clickhouse_url, state_dir=state_dir)


__all__ = ["PulseCommand", "PulseGroup", "expected_failures", "main", "one_line", "settings_of"]
