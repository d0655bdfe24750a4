"""`pulse worker`: wires the ClickHouse sink into the stream pipeline and runs the Faust worker."""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from clickhouse_connect.driver.exceptions import ClickHouseError
from prometheus_client import start_http_server

from pulse import __version__
from pulse.allocator import fix_mmap_threshold, library_resident_mb, page_out_library
from pulse.errors import short_reason
from pulse.gc_tuning import pause_for_start_up, tune_for_streaming
from pulse.kafka_security import check_kafka_access, faust_credentials
from pulse.settings import Settings
from pulse.store import open_warehouse
from sinks.sink import ClickHouseSink
from streams import metrics

if TYPE_CHECKING:  # imported in run(), once the store is being migrated (see there)
    from streams.app import StreamConfig
    from streams.pipeline import Pipeline

log = logging.getLogger(__name__)

ENGINE_LIBRARY = "chdb"  # in the file name of the embedded engine's library (_chdb.abi3.so, libchdb.so)
# The engine's start-up pages are released once more this long after the worker starts: the first release
# skips pages another process on the machine mapped at that moment (a `pulse query`, a test, another worker),
# and the first batches run set-up code of their own (first inserts, lookups and merges) that is not run again.
RELEASE_AGAIN_AFTER_S = 20.0


def build_sink(settings: Settings) -> ClickHouseSink:
    warehouse = open_warehouse(settings, keep_open=True, share_on_request=not settings.chdb_keep_open)
    return ClickHouseSink(warehouse, outage_flag=settings.sink_outage_flag)


def build_pipeline(settings: Settings, sink: ClickHouseSink) -> Pipeline:
    from streams.pipeline import Pipeline

    return Pipeline(
        sink,
        topics={topic: stream for stream, topic in settings.topics.streams.items()},
        lateness_s=settings.allowed_lateness_s,
        max_future_s=settings.max_future_s,
        watermark_quorum=settings.watermark_quorum,
        max_message_bytes=settings.max_message_bytes,
    )


def stream_config(settings: Settings) -> StreamConfig:
    from streams.app import StreamConfig

    return StreamConfig(
        app_id=settings.consumer_group,
        broker=f"kafka://{settings.kafka_bootstrap}",
        input_topics=settings.topics.inputs,
        deadletter_topic=settings.topics.deadletter,
        windows_topic=settings.topics.windows,
        batch_max_events=settings.batch_max_events,
        batch_max_bytes=settings.batch_max_bytes,
        batch_within_s=settings.batch_within_s,
        retry_max_s=settings.sink_retry_max_s,
        session_timeout_s=settings.kafka_session_timeout_s,
        max_poll_records=settings.kafka_max_poll_records,
        max_partition_fetch_bytes=settings.kafka_max_partition_fetch_bytes,
        broker_credentials=faust_credentials(settings),
        datadir=str(settings.state_dir / "faust"),
        offset_trace_dir=str(settings.offset_trace_dir) if settings.offset_trace_dir else None,
    )


def migrate_at_start(sink: ClickHouseSink) -> None:
    """Apply pending migrations now, so that dashboards and `pulse query` find the tables before any event.

    A ClickHouse that cannot be reached yet does not stop the worker: the sink migrates again before its
    first write and retries that write like any other, with backpressure, until ClickHouse answers."""
    try:
        applied = sink.migrate()
    except (ClickHouseError, OSError) as error:  # OSError: refused connections, a store held elsewhere
        log.warning("migrations at start failed (%s); the sink applies them before its first write",
                    short_reason(error))
        return
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))


def release_engine_start_up_pages(sink: ClickHouseSink) -> float:
    """Once the embedded store is open and migrated, give back the library pages only its start-up ran
    (pulse.allocator.page_out_library); returns the MB of the library's resident pages released.

    ~170 of the ~195 MB chDB's library has resident at that point go; storing batches brings ~100 MB of
    them back (the code a worker keeps running), read from the file once. What remains resident is what
    the worker uses (docs/perf/issue-14-r4m-memory.md). A worker on a ClickHouse server maps no engine."""
    if not sink.warehouse.embedded:
        return 0.0
    before = library_resident_mb(ENGINE_LIBRARY)["rss"]
    page_out_library(ENGINE_LIBRARY)
    after = library_resident_mb(ENGINE_LIBRARY)["rss"]
    log.info("released chDB's start-up pages: its library's resident pages %.0f -> %.0f MB", before, after)
    return before - after


def prepare_store(sink: ClickHouseSink, release_start_up_pages: bool) -> None:
    """The store's start, on a thread of its own: migrations, then (when asked) the engine's start-up pages."""
    migrate_at_start(sink)
    if release_start_up_pages:
        release_engine_start_up_pages(sink)


def run(settings: Settings, loglevel: str = "warning") -> None:
    """Run until SIGTERM/SIGINT; the sink is flushed batch by batch, so stopping only commits and closes."""
    pause_for_start_up()  # resumed, tuned, by tune_for_streaming() below (pulse/gc_tuning.py)
    fix_mmap_threshold(settings.malloc_mmap_threshold_bytes)
    # On a refused login Faust exits saying only "Unable to bootstrap", and the supervisor would restart it
    # for ever; checking first names the cause, and tells a refusal (final) from an absent broker (retried).
    check_kafka_access(settings)
    start_http_server(settings.metrics_port, addr=settings.metrics_host)
    metrics.BUILD_INFO.info({"version": __version__})
    sink = build_sink(settings)
    # The store is opened and migrated on a thread of its own while this one imports Faust and joins the
    # consumer group: chDB runs the DDL without the GIL, so the two overlap (~0.3 s of a worker's start,
    # docs/perf/issue-14.md). The first batch still finds every table: its transaction waits for the
    # store's lease, which the migration holds until it is done.
    migrating = threading.Thread(target=prepare_store, args=(sink, settings.release_engine_start_up_pages),
                                 name="migrate-at-start")
    migrating.start()
    releasing_again = threading.Timer(RELEASE_AGAIN_AFTER_S, release_engine_start_up_pages, args=(sink,))
    releasing_again.daemon = True
    if settings.release_engine_start_up_pages:
        releasing_again.start()
    try:
        import faust

        from streams.app import create_app

        app = create_app(stream_config(settings), build_pipeline(settings, sink))
        tune_for_streaming()  # start-up is done: what it built is never collected again (pulse/gc_tuning.py)
        faust.Worker(app, loglevel=loglevel, quiet=True, override_logging=False).execute_from_commandline()
    finally:
        releasing_again.cancel()
        migrating.join()
        sink.close()
