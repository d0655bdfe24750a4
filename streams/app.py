"""The faust-streaming application: the three input topics are read in whole fetches (streams.batching),
gathered into batches and stored through the Pipeline in a worker thread (the ClickHouse client blocks),
retried with backoff while the sink fails. Offsets are acked, hence committed, only after their batch
is stored; while a flush is retried the fetch loop waits, so memory stays bounded (backpressure).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import chain

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from streams import metrics
from streams.batching import BulkApp
from streams.offset_trace import OffsetTrace, tp_name
from streams.pipeline import Outcome, Pipeline, Record
from streams.record_batches import send_record_batches

log = logging.getLogger(__name__)
EXIT_UNSTORED = 3
BROKER_MAX_POLL_RECORDS = 10_000


@dataclass(frozen=True)
class StreamConfig:
    app_id: str
    broker: str
    input_topics: tuple[str, ...]
    deadletter_topic: str
    windows_topic: str
    batch_max_events: int
    batch_within_s: float
    retry_max_s: float
    session_timeout_s: float = 15.0
    broker_credentials: object | None = None
    datadir: str | None = None  # Faust's own working files; default is a folder in the working directory
    batch_max_bytes: int = 16 * 2**20  # message bytes that also close a batch (memory bounded for large messages)
    offset_trace_dir: str | None = None  # streams.offset_trace: off unless set
    max_poll_records: int = BROKER_MAX_POLL_RECORDS  # records handed over per fetch loop turn
    max_partition_fetch_bytes: int = 2**20  # what the broker returns per partition and fetch (aiokafka buffers it)


def _window_key(row: dict) -> bytes:
    return f"{row['table']}:{row['window_start'].isoformat()}:{row['province_code']}".encode()


def _json_default(value: object) -> str:
    return str(value)


class BulkPublisher:
    """Sends keyed messages as one record batch per partition (several when a batch is full), straight to the
    aiokafka producer. Faust's `send_soon` builds a FutureMessage, a PendingMessage and futures for every
    message and hands each to the producer on its own: a few hundred window rows and dead letters a batch cost
    more of the event loop's time than fetching the batch. Each message still goes to the partition its key
    picks (aiokafka's default partitioner, as `send` would choose), one Kafka message per row as before.

    Publishing is best effort, as with `send_soon`: the rows are stored before they are published, and a later
    recomputation of the same window publishes it again. So sends run in a background task (the next batch
    is not held up by the broker), one after the other (a window's rows leave in the order they were made),
    and a failed send is logged, not retried."""

    def __init__(self, producer: Callable[[], Awaitable[AIOKafkaProducer]]) -> None:
        self.producer = producer
        self.partitioner = DefaultPartitioner()
        self.sending: asyncio.Future | None = None

    def publish(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        if messages:
            self.sending = asyncio.ensure_future(self._send_after(self.sending, topic, messages))

    async def wait(self) -> None:
        """Until everything handed to `publish` so far has been given to the producer."""
        if self.sending is not None:
            await asyncio.wait({self.sending})

    async def _send_after(self, previous: asyncio.Future | None, topic: str,
                          messages: list[tuple[bytes | None, bytes]]) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        try:
            await self.send(topic, messages)
        except Exception as error:  # best effort (class notes): never takes the worker down
            log.warning("publishing %d messages on %s failed: %r", len(messages), topic, error)

    async def send(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> list[asyncio.Future]:
        """Queue `messages` on the producer; returns the futures of the record batches' delivery."""
        producer = await self.producer()
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for key, value in messages:
            by_partition.setdefault(self.partitioner(key, partitions, partitions), []).append((key, value))
        deliveries = []
        for partition, batch_messages in by_partition.items():
            deliveries += await send_record_batches(producer, topic, partition, batch_messages)
        for delivery in deliveries:
            delivery.add_done_callback(_log_failed_delivery)
        return deliveries


def _log_failed_delivery(delivery: asyncio.Future) -> None:
    if not delivery.cancelled() and delivery.exception() is not None:
        log.warning("a published record batch was not delivered: %r", delivery.exception())


async def _aiokafka_producer(app: BulkApp) -> AIOKafkaProducer:
    """The aiokafka producer under Faust's (started on first use, as Faust's own sends start it)."""
    producer = await app.maybe_start_producer()
    return producer._ensure_producer()  # faust-streaming 0.15's aiokafka driver (pinned)


class Ingest:
    """Collects fetched records across partitions into one batch, stores it, then acks it.

    A batch is flushed when it reaches `batch_max_events` or `batch_max_bytes` of message values (awaited
    inside the fetch loop, so fetching waits: backpressure) or when its oldest record is `batch_within_s`
    old (a timer). Records are acked
    only after their batch is stored, and Faust commits only acked offsets.
    """

    def __init__(self, app: BulkApp, pipeline: Pipeline, config: StreamConfig) -> None:
        self.app = app
        self.pipeline = pipeline
        self.config = config
        self.publisher = BulkPublisher(lambda: _aiokafka_producer(app))
        self.pending: list[tuple[TP, list, int]] = []  # (partition, records, consumer.revocations at fetch)
        self.pending_count = 0
        self.pending_bytes = 0
        self.oldest = 0.0
        self.flushing = asyncio.Lock()
        self.in_flight: asyncio.Future | None = None
        self.idle_since = 0.0  # when the last flush ended (monotonic)
        self.last_offsets: dict[tuple[str, int], int] = {}
        self.last_timestamps: dict[tuple[str, int], float] = {}  # Kafka timestamp (s) of the last stored record
        metrics.SINK_BUFFER_LIMIT.set(2 * config.batch_max_events + config.max_poll_records)

    async def on_records(self, tp: TP, records: list) -> None:
        if not self.pending:
            self.oldest = time.monotonic()
        self.pending.append((tp, records, self.app.consumer.revocations))
        self.pending_count += len(records)
        self.pending_bytes += sum([len(r.value) for r in records if r.value is not None])
        metrics.SINK_BUFFERED.set(self.pending_count)
        while self.full():
            if self.storing():
                # One batch may be stored while the next one is fetched; a third waits (backpressure).
                await asyncio.shield(self.in_flight)
            else:
                self.in_flight = asyncio.ensure_future(self.flush())
                break

    def full(self) -> bool:
        return self.pending_count >= self.config.batch_max_events or self.pending_bytes >= self.config.batch_max_bytes

    def storing(self) -> bool:
        return self.in_flight is not None and not self.in_flight.done()

    async def flush_if_due(self) -> None:
        """The time bound, for a slow input. Only while no batch is being stored: a batch that filled up while
        the previous one was stored goes next in full (the fetch loop starts it), and is not cut short by the
        timer (that left batches of a few thousand messages, each paying a batch's fixed costs)."""
        if self.due() and not self.storing():
            self.in_flight = asyncio.ensure_future(self.flush())
            await asyncio.shield(self.in_flight)

    async def drain(self) -> None:
        """Store and ack everything buffered (before partitions are revoked: streams.batching)."""
        if self.in_flight is not None:
            await asyncio.shield(self.in_flight)
        await asyncio.shield(self.flush())

    def due(self) -> bool:
        """The pending batch has waited `batch_within_s`, and no batch has been stored for a quarter of that.
        After a store that took longer than the time bound, the fetch loop gets that much time to fill the
        batch: while the pipeline thread ran it had the interpreter only between the pipeline's turns, and
        flushing at once stored batches a third full, each paying a batch's fixed costs (queries, inserts)."""
        now = time.monotonic()
        within = self.config.batch_within_s
        return bool(self.pending) and now - self.oldest >= within and now - self.idle_since >= within / 4

    async def flush(self) -> None:
        async with self.flushing:
            if not self.pending:
                return
            batch, self.pending, self.pending_count, self.pending_bytes = self.pending, [], 0, 0
            # aiokafka's records as they are (streams.pipeline.Record): no copy of each record to make.
            messages = list(chain.from_iterable(records for _, records, _ in batch))
            began = time.monotonic()
            outcome = await self._store(messages)
            log.info("stored %d messages (%d fetched slices) in %.3f s; %d window rows, %d dead letters to publish",
                     len(messages), len(batch), time.monotonic() - began, len(outcome.window_rows),
                     len(outcome.dead_letters))
            metrics.SINK_BUFFERED.set(self.pending_count)
            assigned = self.app.consumer.assignment()
            trace = self.app.offset_trace
            for tp, records, fetched_at in batch:
                # Records fetched before a revocation are not acked, even if the partition came back: its
                # committed offset may have moved since, and it is read again from there.
                acked = self.app.consumer.ack_records(tp, records, fetched_at) if tp in assigned else 0
                if trace is not None:
                    trace.write("flush", tp=tp_name(tp), first=records[0].offset, last=records[-1].offset,
                                fetched_at=fetched_at, acked=acked)
                self._stored(tp, records[-1])
            self._publish(outcome)
            self.idle_since = time.monotonic()

    def _stored(self, tp: TP, last: Record) -> None:
        """Remember how far a partition is stored: once per partition and batch, not per record."""
        stored_at = last.timestamp / 1000
        self.last_offsets[(tp.topic, tp.partition)] = last.offset
        self.last_timestamps[(tp.topic, tp.partition)] = stored_at
        metrics.LAST_STORED_TIMESTAMP.labels(tp.topic, str(tp.partition)).set(stored_at)

    async def _store(self, messages: list[Record]) -> Outcome:
        delay = 0.2
        while True:
            flush = asyncio.ensure_future(asyncio.to_thread(self.pipeline.process, messages))
            try:
                return await asyncio.shield(flush)
            except asyncio.CancelledError:
                await asyncio.wait({flush}, timeout=self.config.retry_max_s)  # finish a flush in flight
                raise
            except Exception as error:  # any sink failure is retried, never fatal
                metrics.SINK_FAILURES.inc()
                if self.app.should_stop:
                    # Asked to stop while the sink is down: the batch is not stored and must not be
                    # committed, so leave now; the next start reads these messages again.
                    log.critical("stopping with %d messages not stored (%s); exiting without commit",
                                 len(messages), error)
                    os._exit(EXIT_UNSTORED)
                log.warning("sink flush of %d messages failed (%s); retrying in %.1f s", len(messages), error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.retry_max_s)

    def _publish(self, outcome: Outcome) -> None:
        # In the background (BulkPublisher): publishing does not hold up the next batch. Losing them in a crash
        # is harmless: the rows are in ClickHouse and a later recomputation of the same window publishes it again.
        self.publisher.publish(self.config.windows_topic, [(_window_key(row), orjson.dumps(row, default=_json_default))
                                                           for row in outcome.window_rows])
        self.publisher.publish(self.config.deadletter_topic, [(key, record.model_dump_json(exclude={"key"}).encode())
                                                              for key, record in outcome.dead_letters])


def freeze_start_up_heap() -> None:
    """Take what start-up left on the heap (modules, Faust's services, aiokafka, the engine's client) out of the
    cyclic garbage collector's reach. Every batch keeps tens of thousands of records and events alive for a
    second, which sets off collections; each full one walked the whole start-up heap with the GIL held (the
    pipeline thread spent ~14 % less CPU per event with it frozen: tools/gc_probe.py). Frozen objects are still
    freed when nothing refers to them. No collection first: it would walk that heap once more (0.1-0.6 s) while
    the first batch waits, to free a few cycles of start-up garbage, which stay instead. `pulse worker` has
    already frozen what existed before Faust started (pulse.gc_tuning); this takes what Faust's start made."""
    gc.freeze()
    log.info("froze the start-up heap: %d objects", gc.get_freeze_count())


def create_app(config: StreamConfig, pipeline: Pipeline) -> BulkApp:
    app = BulkApp(
        config.app_id,
        broker=config.broker,
        broker_credentials=config.broker_credentials,
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=config.datadir,
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=config.max_poll_records,
        consumer_max_fetch_size=config.max_partition_fetch_bytes,
        broker_commit_interval=1.0,
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=min(3.0, config.session_timeout_s / 3),
        broker_commit_every=100_000,
    )
    if config.offset_trace_dir:
        app.offset_trace = OffsetTrace(config.offset_trace_dir)
    inputs = app.topic(*config.input_topics, key_serializer="raw", value_serializer="raw")
    ingest = Ingest(app, pipeline, config)
    app.batch_handler(inputs)(ingest.on_records)
    app.drain_hooks.append(ingest.drain)

    @app.task
    async def settle() -> None:
        freeze_start_up_heap()

    @app.task
    async def flush_when_due() -> None:
        while not app.should_stop:
            await asyncio.sleep(config.batch_within_s / 4)
            await ingest.flush_if_due()

    @app.timer(5.0)
    async def report_lag() -> None:
        _report_lag(app, ingest.last_offsets, ingest.last_timestamps, time.time())

    return app


def _report_lag(app: BulkApp, last_offsets: dict[tuple[str, int], int], last_timestamps: dict[tuple[str, int], float],
                now: float) -> None:
    """Offsets and lag per assigned partition. Lag in seconds is measured on message timestamps: while a partition
    has unstored messages, the stored data is as old as the last stored message (none stored yet by this worker:
    unknown, left unset). The rules recompute it from pulse_last_stored_record_timestamp_seconds, so that it keeps
    growing even when this timer stops."""
    for tp in app.consumer.assignment():
        highwater = app.consumer.highwater(tp)
        if highwater is None:
            continue
        key = (tp.topic, tp.partition)
        done = last_offsets.get(key, -1)
        lag = max(0, highwater - done - 1)
        labels = (tp.topic, str(tp.partition))
        metrics.LOG_END_OFFSET.labels(*labels).set(highwater)
        metrics.COMMITTED_OFFSET.labels(*labels).set(done + 1)
        metrics.LAG_MESSAGES.labels(*labels).set(lag)
        if lag == 0:
            metrics.LAG_SECONDS.labels(*labels).set(0.0)
        elif key in last_timestamps:
            metrics.LAG_SECONDS.labels(*labels).set(max(0.0, now - last_timestamps[key]))
