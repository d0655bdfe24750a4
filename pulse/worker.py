"""`pulse worker`: wires the ClickHouse sink into the stream pipeline and runs the Faust worker."""
from __future__ import annotations

import logging

import faust
from prometheus_client import start_http_server

from pulse import __version__
from pulse.kafka_security import check_kafka_access, faust_credentials
from pulse.settings import STREAM_TOPICS, TOPIC_DEADLETTER, TOPIC_WINDOWS, Settings
from pulse.store import open_warehouse
from sinks.sink import ClickHouseSink
from streams import metrics
from streams.app import StreamConfig, create_app
from streams.pipeline import Pipeline

log = logging.getLogger(__name__)


def build_sink(settings: Settings) -> ClickHouseSink:
    warehouse = open_warehouse(settings, keep_open=True, share_on_request=not settings.chdb_keep_open)
    return ClickHouseSink(warehouse, outage_flag=settings.sink_outage_flag)


def build_pipeline(settings: Settings, sink: ClickHouseSink) -> Pipeline:
    return Pipeline(
        sink,
        topics={topic: stream for stream, topic in STREAM_TOPICS.items()},
        lateness_s=settings.allowed_lateness_s,
        max_future_s=settings.max_future_s,
        watermark_quorum=settings.watermark_quorum,
        max_message_bytes=settings.max_message_bytes,
    )


def stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        app_id=settings.consumer_group,
        broker=f"kafka://{settings.kafka_bootstrap}",
        input_topics=tuple(STREAM_TOPICS.values()),
        deadletter_topic=TOPIC_DEADLETTER,
        windows_topic=TOPIC_WINDOWS,
        batch_max_events=settings.batch_max_events,
        batch_within_s=settings.batch_within_s,
        retry_max_s=settings.sink_retry_max_s,
        session_timeout_s=settings.kafka_session_timeout_s,
        broker_credentials=faust_credentials(settings),
        datadir=str(settings.state_dir / "faust"),
    )


def run(settings: Settings, loglevel: str = "warning") -> None:
    """Run until SIGTERM/SIGINT; the sink is flushed batch by batch, so stopping only commits and closes."""
    # On a refused login Faust exits saying only "Unable to bootstrap", and the supervisor would restart it
    # for ever; checking first names the cause, and tells a refusal (final) from an absent broker (retried).
    check_kafka_access(settings)
    start_http_server(settings.metrics_port, addr=settings.metrics_host)
    metrics.BUILD_INFO.info({"version": __version__})
    sink = build_sink(settings)
    app = create_app(stream_config(settings), build_pipeline(settings, sink))
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, override_logging=False)
    try:
        worker.execute_from_commandline()
    finally:
        sink.close()
