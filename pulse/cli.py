"""The `pulse` command line."""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path

import click

from pulse import infra
from pulse.settings import Settings, apply_overrides, get_settings


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else get_settings()


# Bad input is a usage error: one line and exit status 2, before anything starts.
POSITIVE_COUNT = click.IntRange(min=1)
POSITIVE_NUMBER = click.FloatRange(min=0, min_open=True)
PORT = click.IntRange(min=0, max=65535)


def _check_faults(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """`--faults KIND=FRACTION,...`, checked when the command line is read (the parser is the simulator's)."""
    if value is None:
        return None
    from simulators.faults import parse_faults

    for part in filter(None, value.split(",")):
        _kind, _, fraction = part.partition("=")
        try:
            float(fraction)
        except ValueError:
            raise click.BadParameter(f"{part!r}: write KIND=FRACTION, e.g. duplicate=0.01") from None
    try:
        parse_faults(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    return value


def _check_start(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    from pulse.simulate import parse_start

    try:
        return parse_start(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
        # kafka-python warns about its own slow event-loop turns on a busy 2-core box; noise for users.
        logging.getLogger("kafka").setLevel(logging.ERROR)
        # Their retry warnings repeat what the one-line error then says. (urllib3-future, where installed,
        # resets the level of its "urllib3" logger when imported, hence the module's own logger.)
        for name in ("urllib3.connectionpool", "clickhouse_connect"):
            logging.getLogger(name).setLevel(logging.ERROR)
    ctx.obj = apply_overrides(kafka_bootstrap=kafka_bootstrap, clickhouse_url=clickhouse_url, state_dir=state_dir)


@main.group("infra")
def infra_group() -> None:
    """Start, stop and show the local real services (Kafka; Prometheus and Alertmanager when installed)."""


@infra_group.command("up")
@click.option("--no-monitoring", is_flag=True, help="Start Kafka only.")
@click.pass_context
def infra_up(ctx: click.Context, no_monitoring: bool) -> None:
    """Start Kafka (KRaft) and, when installed, Prometheus and Alertmanager; create the topics. Idempotent."""
    try:
        for line in infra.up(_settings(ctx), with_monitoring=not no_monitoring):
            click.echo(line)
    except infra.InfraError as error:
        raise click.ClickException(str(error)) from None


@infra_group.command("down")
@click.option("--purge", is_flag=True, help="Also delete Kafka logs, metrics and the embedded ClickHouse store.")
@click.pass_context
def infra_down(ctx: click.Context, purge: bool) -> None:
    """Stop what `infra up` started (found through the pid files in the state directory)."""
    for line in infra.down(_settings(ctx), purge=purge):
        click.echo(line)


@infra_group.command("fetch")
def infra_fetch() -> None:
    """Download the Kafka broker jars from Maven Central (done by `up` when missing)."""
    try:
        click.echo(f"Kafka jars in {infra.ensure_kafka_jars()}")
    except infra.InfraError as error:
        raise click.ClickException(str(error)) from None


@infra_group.command("status")
@click.pass_context
def infra_status(ctx: click.Context) -> None:
    """Show whether each local service is up, with its address and pid."""
    for line in infra.status(_settings(ctx)):
        click.echo(line)


@main.command()
@click.option("--scenario", default="default", show_default=True, help="Scenario name or TOML path.")
@click.option("--seed", type=int, default=None, help="Makes the output byte-for-byte reproducible.")
@click.option("--events", type=POSITIVE_COUNT, default=None, help="Number of events to generate.")
@click.option("--duration", "duration_s", type=POSITIVE_NUMBER, default=None, help="Seconds to run (Kafka output).")
@click.option("--rate", type=POSITIVE_NUMBER, default=500.0, show_default=True, help="Events per second (wall clock).")
@click.option("--start", default=None, callback=_check_start,
              help="Event-time origin, ISO 8601 with offset, or `now`.")
@click.option("--speed", type=POSITIVE_NUMBER, default=1.0, show_default=True,
              help="Event-time seconds per wall second.")
@click.option("--faults", default=None, callback=_check_faults, help="e.g. duplicate=0.01,late=0.02,malformed=0.005")
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
    try:
        report = run(options, _settings(ctx))
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(report), err=out is None)


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
            run(_settings(ctx), loglevel=loglevel)
        except (KafkaSecurityError, KafkaLoginRefused, ClickHouseSettingsError) as error:
            # A distinct exit code, so the supervisor gives up instead of restarting into the same refusal.
            click.echo(f"Error: {error}", err=True)
            sys.exit(EXIT_CONFIG)
        except KafkaUnreachable as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(1)  # restarted with backoff: a broker that is down now may be back soon
        return

    command = [sys.executable, "-m", "pulse.cli", "worker", "--no-restart", "--loglevel", loglevel]
    sys.exit(Supervisor(command).run())


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
        run(_settings(ctx), port, interval_s)
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--from-file", "from_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSONL file, one message value per line (gzip-compressed `.gz` too).")
@click.option("--topic", "topics", multiple=True,
              help="Kafka topic to replay (repeatable), with --since/--until.")
@click.option("--since", default=None,
              help="Start of the range, ISO 8601 with offset (e.g. 2026-01-05T00:00:00+07:00), INCLUDED.")
@click.option("--until", default=None, help="End of the range, ISO 8601 with offset, EXCLUDED.")
@click.option("--from-offsets", "from_offsets", default=None,
              help="topic:partition:start-end[,...]: offsets start <= o < end (end excluded; `start-` = to "
                   "the current end).")
@click.option("--direct", is_flag=True,
              help="Write straight into ClickHouse through the worker's pipeline and sink, without Kafka; "
                   "progress is kept under pseudo-topics `replay:<source>@<digest>/<stream>`.")
@click.option("--speed", default="max", show_default=True,
              help="`max`, or an event-time factor: 1440 replays a day in a minute.")
@click.option("--dry-run", "dry_run", is_flag=True,
              help="Count per stream, day (UTC) and province what would be sent (or, with --direct, written "
                   "and dead-lettered); writes nothing.")
@click.option("--wait", is_flag=True, help="Return only when the worker's group has committed everything sent.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Limit for --wait, seconds.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted replay of the same source and target from its checkpoint "
                   "(<state dir>/replay-checkpoints/); without it a replay starts from the beginning.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Stop after this many messages (resume later with --resume).")
@click.option("--quiet", is_flag=True, help="No progress bar (there is none when stdout is not a terminal).")
@click.pass_context
def replay(ctx: click.Context, from_file: Path | None, topics: tuple[str, ...], since: str | None, until: str | None,
           from_offsets: str | None, direct: bool, speed: str, dry_run: bool, wait: bool, timeout: float,
           resume: bool, limit: int | None, quiet: bool) -> None:
    """Re-feed events from a file or a Kafka range into the input topics, or --direct into ClickHouse.

    Kafka ranges are by message timestamp and half-open, [--since, --until): per partition from the
    consumer's offsets_for_times(since) up to offsets_for_times(until), keeping only messages with
    since <= timestamp < until. Replaying the same events twice changes no window. Prints a JSON report.
    """
    from kafka.errors import KafkaError

    from pulse.replay import ReplayOptions, parse_offsets, parse_speed, parse_time, run_replay
    from sinks.client import StoreBusy

    try:
        options = ReplayOptions(
            from_file=from_file, topics=topics,
            since=parse_time(since, "--since") if since else None,
            until=parse_time(until, "--until") if until else None,
            from_offsets=parse_offsets(from_offsets) if from_offsets else None,
            direct=direct, speed=parse_speed(speed), dry_run=dry_run, wait=wait, timeout_s=timeout,
            resume=resume, limit=limit, quiet=quiet)
        report = run_replay(_settings(ctx), options)
    except (ValueError, TimeoutError, StoreBusy, KafkaError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(report))
    if report.get("stopped") == "stopped":
        sys.exit(130)


@main.command()
@click.option("--topic", "topics", multiple=True, help="Kafka topic to export (repeatable), with --since/--until.")
@click.option("--since", default=None, help="Start, ISO 8601 with offset, INCLUDED (message timestamp).")
@click.option("--until", default=None, help="End, ISO 8601 with offset, EXCLUDED.")
@click.option("--from-offsets", "from_offsets", default=None,
              help="topic:partition:start-end[,...] instead of a time range (end excluded).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file; gzip-compressed when it ends in .gz.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def archive(ctx: click.Context, topics: tuple[str, ...], since: str | None, until: str | None,
            from_offsets: str | None, out: Path, quiet: bool) -> None:
    """Export raw message values of a Kafka range, byte for byte, one per line, for `pulse replay`.

    The range is [--since, --until) by message timestamp, merged across partitions in timestamp order.
    Values that a line cannot hold (tombstones, empty values, values with a line break) are counted and
    left out. Prints a JSON report.
    """
    from kafka.errors import KafkaError

    from pulse.archive import run_archive
    from pulse.kafka_security import kafka_options
    from pulse.replay import TopicSource, parse_offsets, parse_time

    try:
        if bool(topics) == bool(from_offsets):
            raise ValueError("give --topic (with --since/--until) or --from-offsets")
        if from_offsets and (since or until):
            raise ValueError("--since/--until do not combine with --from-offsets")
        source = TopicSource(_settings(ctx).kafka_bootstrap, topics=topics,
                             since=parse_time(since, "--since") if since else None,
                             until=parse_time(until, "--until") if until else None,
                             offsets=parse_offsets(from_offsets) if from_offsets else None,
                             security=kafka_options(_settings(ctx)))
        report = run_archive(source, out, quiet=quiet)
    except (ValueError, TimeoutError, KafkaError, OSError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(report))


@main.command()
@click.option("--table", "tables", multiple=True, required=True,
              type=click.Choice(["payments_1m", "dossiers_1m", "id_activations_1m", "all"]),
              help="Window table to recompute (repeatable), or `all`.")
@click.option("--since", required=True, help="First window start, ISO 8601 with offset, INCLUDED.")
@click.option("--until", required=True, help="End, ISO 8601 with offset, EXCLUDED.")
@click.option("--province", "provinces", multiple=True,
              help="Only these provinces (repeatable; legacy codes are mapped to current ones).")
@click.option("--verify", is_flag=True,
              help="Only compare recomputed rows with the stored ones (FINAL); exit 1 on any difference.")
@click.option("--prune", is_flag=True,
              help="Also delete stored windows that have no raw events any more (kept by default).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def backfill(ctx: click.Context, tables: tuple[str, ...], since: str, until: str, provinces: tuple[str, ...],
             verify: bool, prune: bool, quiet: bool) -> None:
    """Recompute window tables for [--since, --until) from the raw tables inside ClickHouse.

    Uses the same window definitions as the worker; writes only windows that differ from the
    recomputation (so a second run writes nothing). Prints a JSON report.
    """
    from pulse.backfill import BackfillOptions, run_backfill
    from pulse.replay import parse_time
    from sinks.client import StoreBusy

    try:
        options = BackfillOptions(tables=tables, since=parse_time(since, "--since"), until=parse_time(until, "--until"),
                                  provinces=provinces, verify=verify, prune=prune, quiet=quiet)
        report = run_backfill(_settings(ctx), options)
    except (ValueError, StoreBusy) as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(report, default=str))
    if verify and report["differences"]:
        sys.exit(1)


@main.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="Output format.")
@click.pass_context
def query(ctx: click.Context, sql: str, fmt: str) -> None:
    """Run read-only SQL on the configured ClickHouse (PULSE_CLICKHOUSE_QUERY_URL, else PULSE_CLICKHOUSE_URL).

    Never creates a store or tables: a missing store, database or table is an error that says so.
    """
    from pulse.query import render, run_query

    try:
        columns, rows = run_query(_settings(ctx), sql)
    except Exception as error:  # noqa: BLE001 - a user's SQL error is a message, not a traceback
        raise click.ClickException(str(error).strip().splitlines()[0] if str(error).strip() else repr(error))
    click.echo(render(columns, rows, fmt))


@main.command()
@click.option("--print", "print_only", is_flag=True,
              help="Print every migration's SQL (for the configured database) instead of applying it; "
                   "connects to nothing.")
@click.pass_context
def migrate(ctx: click.Context, print_only: bool) -> None:
    """Create the ClickHouse database and apply pending schema migrations (idempotent; the worker does it at start)."""
    from pulse.errors import short_reason
    from pulse.migrate import migration_script, run_migrate
    from pulse.settings import ClickHouseSettingsError
    from sinks.client import StoreBusy, redact_url

    settings = _settings(ctx)
    try:
        if print_only:
            click.echo(migration_script(settings))
            return
        applied, database = run_migrate(settings)
    except (ValueError, StoreBusy, ClickHouseSettingsError) as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # noqa: BLE001 - a refused or unreachable server is a message, not a traceback
        where = redact_url(settings.clickhouse_connection()[0])
        raise click.ClickException(f"migrating the ClickHouse at {where} failed: {short_reason(error)}") from None
    where = f"database {database} at {redact_url(settings.clickhouse_connection()[0])}"
    click.echo(f"applied {', '.join(applied)} to {where}" if applied else f"{where} is up to date")


@main.command()
@click.option("--duration", "duration_s", type=POSITIVE_NUMBER, default=None, help="Stop after this many seconds.")
@click.pass_context
def watch(ctx: click.Context, duration_s: float | None) -> None:
    """Live terminal view of current-window adoption per province."""
    from pulse.watch import watch as run_watch

    run_watch(_settings(ctx), duration_s=duration_s)


@main.command()
@click.option("--duration", "duration_s", type=POSITIVE_NUMBER, default=60.0, show_default=True,
              help="Seconds of simulated load.")
@click.option("--rate", type=POSITIVE_NUMBER, default=400.0, show_default=True, help="Events per second.")
@click.option("--speed", type=POSITIVE_NUMBER, default=60.0, show_default=True, help="Event-time speed-up.")
@click.option("--keep-infra", is_flag=True, help="Leave Kafka running afterwards.")
@click.pass_context
def demo(ctx: click.Context, duration_s: float, rate: float, speed: float, keep_infra: bool) -> None:
    """Everything in one command: infra up, worker, simulators, live view."""
    from pulse.demo import run

    try:
        run(_settings(ctx), duration_s=duration_s, rate=rate, speed=speed, keep_infra=keep_infra)
    except (infra.InfraError, TimeoutError) as error:
        raise click.ClickException(str(error)) from None


@main.command()
@click.option("--events", type=POSITIVE_COUNT, default=1_000_000, show_default=True,
              help="Events for the throughput run.")
@click.option("--rate", type=POSITIVE_NUMBER, default=5000.0, show_default=True,
              help="Steady rate for the freshness run.")
@click.option("--freshness-seconds", type=POSITIVE_NUMBER, default=20.0, show_default=True,
              help="Length of the freshness run.")
@click.option("--keep", is_flag=True, help="Keep the bench's ClickHouse store under .pulse/bench/.")
@click.option("--sustained", is_flag=True,
              help="Instead: raise the offered rate in steps until lag stops being bounded; report the highest held.")
@click.option("--step-seconds", type=POSITIVE_NUMBER, default=60.0, show_default=True,
              help="With --sustained: length of each rate step.")
@click.pass_context
def bench(ctx: click.Context, events: int, rate: float, freshness_seconds: float, keep: bool, sustained: bool,
          step_seconds: float) -> None:
    """End-to-end benchmark on the real broker and chDB; prints a table and one JSON object (last line)."""
    from rich.console import Console
    from rich.table import Table

    from pulse.bench import BenchOptions
    from pulse.bench import run as run_bench

    console = Console(stderr=True)
    settings = _settings(ctx)
    try:
        if not infra.kafka_reachable(settings):
            infra.up(settings, with_monitoring=False)
    except infra.InfraError as error:
        raise click.ClickException(str(error)) from None

    def say(text: str) -> None:
        console.print(f"[dim]{text}[/]")

    if sustained:
        from pulse.bench import SustainedOptions, run_sustained

        result = run_sustained(settings, SustainedOptions(step_s=step_seconds, keep=keep), say=say)
    else:
        result = run_bench(settings, BenchOptions(events=events, rate=rate, freshness_s=freshness_seconds, keep=keep),
                           say=say)
    table = Table("measure", "value", title="pulse bench")
    for name, value in result.items():
        table.add_row(name, f"{value:,}" if isinstance(value, (int, float)) and not isinstance(value, bool)
                      else str(value))
    console.print(table)
    click.echo(json.dumps(result))


@main.command()
@click.option("--minutes", type=POSITIVE_NUMBER, default=10.0, show_default=True,
              help="Length of the load (0.5 = 30 s).")
@click.option("--rate", type=POSITIVE_NUMBER, default=2000.0, show_default=True, help="Events per second, steady.")
@click.option("--seed", type=int, default=None, help="Simulator seed (the events and faults sent).")
@click.option("--sample-s", type=float, default=5.0, show_default=True, help="Seconds between RSS/lag samples.")
@click.option("--faults", default=None, callback=_check_faults,
              help="Simulator faults, kinds duplicate, late, out_of_order, too_late, malformed [default: all five].")
@click.option("--kill-every-s", type=float, default=600.0, show_default=True,
              help="SIGKILL the worker's Faust process this often (at least once).")
@click.option("--outage-every-s", type=float, default=600.0, show_default=True,
              help="Take the sink away this often (at least once).")
@click.option("--outage-s", type=float, default=15.0, show_default=True, help="Length of each sink outage.")
@click.option("--warmup-s", type=float, default=None,
              help="Memory samples taken sooner than this after a worker process first stored a batch are "
                   "left out of the trend [default: a sixth of the run, at most 60 s].")
@click.option("--max-rss-growth-pct", type=float, default=10.0, show_default=True,
              help="Largest RSS growth over the run, from the fitted trend, that still passes.")
@click.option("--max-lag", type=int, default=None,
              help="Largest consumer lag that passes [default: two minutes of --rate].")
@click.option("--drain-timeout-s", type=float, default=180.0, show_default=True,
              help="Longest wait for the worker to catch up after the load stops.")
@click.option("--keep", is_flag=True, help="Keep the soak's state (store, worker log) after a pass too.")
@click.pass_context
def soak(ctx: click.Context, keep: bool, faults: str | None, **options: float | int | None) -> None:
    """Steady faulty load with worker kills and sink outages; exit 0 when memory, lag and truth hold."""
    from rich.console import Console

    from pulse.soak import DEFAULT_FAULTS, SoakOptions, summary_table
    from pulse.soak import run as run_soak

    console = Console(stderr=True)
    settings = _settings(ctx)
    try:
        if not infra.kafka_reachable(settings):
            infra.up(settings, with_monitoring=False)
        result = run_soak(settings, SoakOptions(keep=keep, faults=faults or DEFAULT_FAULTS, **options),
                          say=lambda text: console.print(f"[dim]{text}[/]"))
    except (infra.InfraError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    console.print(summary_table(result))
    click.echo(json.dumps(result))
    sys.exit(0 if result["passed"] else 1)


def _register_command_groups() -> None:
    from pulse.dashboards.command import dashboards
    from pulse.report.command import report
    from pulse.vietqr_command import vietqr

    main.add_command(dashboards)
    main.add_command(vietqr)
    main.add_command(report)


_register_command_groups()

if __name__ == "__main__":
    sys.exit(main())
