"""Batch delivery for faust-streaming (aiokafka driver): whole fetches, not one event at a time.

Faust stays the application: App and Worker, group membership, rebalances, offset commits, the producer.
What changes is the consumer's fetch loop. Stock Faust hands every record through
`wait_first(callback(msg), suspend_flow.wait())` (tasks and `asyncio.wait` per record), the Conductor,
an Event, a channel queue and the stream: measured here at about 4,000-6,000 records/s on two cores,
whatever the agent does. For topics registered with `@app.batch_handler(topic)` the loop below gives each
partition's slice of a fetch to one async handler as aiokafka records, keeping the bookkeeping that
commits and rebalances need but doing it once per batch (measured at about 150,000 records/s, 0.6-0.9x
a bare aiokafka consumer). The handler acks records with `consumer.ack_records(tp, records)` once their
effects are stored; Faust's own commit loop commits only acked offsets.

It relies on faust-streaming 0.15 internals (pinned in pyproject.toml): `App._new_transport`,
`Transport.Consumer`, `Consumer._drain_messages` and the consumer's offset/ack state.
"""
from __future__ import annotations

import asyncio
from bisect import bisect_left
from time import monotonic
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Set, Tuple, cast

import faust
import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.structs import ConsumerRecord
from faust.tables.manager import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.topics import TopicT
from mode import Service, ServiceT
from mode.utils.futures import notify

from streams.offset_trace import OffsetTrace, tp_name

try:  # shared with Consumer.ack in the faust-streaming builds that have it
    from faust.types.tuples import ack_lock
except ImportError:  # pragma: no cover - older builds ack from one thread only
    import threading

    ack_lock = threading.RLock()

#: ``handler(tp, records)``: records are from one partition in ascending
#: offset order.  Call ``app.consumer.ack_records(tp, records)`` when they
#: are processed.  Offsets that are never acked are never committed.
BatchHandler = Callable[[TP, List[ConsumerRecord]], Awaitable[None]]

Gap = Tuple[int, int]

#: How long a revocation waits for handlers in flight and buffered batches to be stored. Past it (a sink that
#: is down, a store held by another process) the rebalance goes on; those batches are still stored when
#: they can be, but not acked (fetched before the revocation), so the partitions' owners read them again.
DRAIN_BEFORE_REVOKE_S = 20.0


class FetchedRecord(msgspec.Struct, gc=False, frozen=True):
    """A fetched Kafka record with the attributes of aiokafka's ``ConsumerRecord``, cheaper to hold.

    aiokafka builds a ``ConsumerRecord`` dataclass per record in the consumer thread (a Python ``__init__``
    of eleven fields, with the GIL held) and the cyclic garbage collector tracks each one for as long as
    its batch is fetched, buffered and stored (a second or more): every collection in that time walks them.
    This one is built in C and is not tracked: it holds only strings, numbers, bytes and a tuple of header
    pairs, so it can never be part of a reference cycle.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: Optional[bytes]
    value: Optional[bytes]
    checksum: Optional[int]
    serialized_key_size: int
    serialized_value_size: int
    headers: Tuple[Tuple[str, bytes], ...]


_stock_consumer_record = PartitionRecords._consumer_record


def _fetched_record(self: PartitionRecords, tp: Any, record: Any) -> Any:
    """``PartitionRecords._consumer_record`` (aiokafka 0.14, pinned) building a :class:`FetchedRecord`."""
    if self._key_deserializer or self._value_deserializer:  # Faust deserializes itself; others keep stock
        return _stock_consumer_record(self, tp, record)
    key, value = record.key, record.value
    return FetchedRecord(tp.topic, tp.partition, record.offset, record.timestamp, record.timestamp_type, key, value,
                         record.checksum, -1 if key is None else len(key), -1 if value is None else len(value),
                         tuple(record.headers))


def use_fetched_records() -> None:
    """Make aiokafka's fetcher hand out :class:`FetchedRecord` objects (process-wide: aiokafka builds them in a
    class it does not let a consumer replace). Consumers with deserializers still get ``ConsumerRecord``."""
    PartitionRecords._consumer_record = _fetched_record


#: How long the broker may hold a fetch open while none of its partitions has new records (Faust's aiokafka driver
#: asks for 1,500 ms). aiokafka keeps one fetch in flight per broker, and while records fetched earlier are not
#: consumed it fetches only the other partitions: near the end of a backlog, that was a fetch for partitions
#: already read to their end, held by the broker for 1.5 s while the partitions with records waited for their
#: next fetch behind it. The worker then stored part-full batches (10-12k instead of 20k) at the same points.
FETCH_MAX_WAIT_MS = 200


class BulkConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by AIOKafkaConsumer.start() for its Fetcher
        return consumer

    async def seek_to_committed(self) -> Dict[TP, Optional[int]]:
        return await self.call_thread(seek_to_committed_exactly, self._ensure_consumer(),
                                      self.app.conf.consumer_auto_offset_reset)


async def seek_to_committed_exactly(consumer: AIOKafkaConsumer, offset_reset: str) -> Dict[TP, Optional[int]]:
    """Move every assigned partition to its committed offset, 0 included; one without a commit to where
    `offset_reset` says. Returns the committed offsets (None: no commit).

    aiokafka's ``seek_to_committed`` moves only partitions committed *above* 0 and leaves the others where
    the fetcher stands. After records were fetched and then dropped (the flow stopped for a rebalance: see
    ``_drain_messages``) that is past them: a partition committed at 0 then went on from offset 1, and
    ``_accept``, reading from 0, took offset 0 for a hole and committed past it (first records of fresh
    topics lost with two workers, seen in tests/scale_out/test_scale_run.py's offset trace)."""
    committed = await consumer.seek_to_committed()
    for tp, offset in committed.items():
        if offset == 0:
            consumer.seek(tp, 0)
    uncommitted = [tp for tp, offset in committed.items() if offset is None]
    if uncommitted:
        if offset_reset == "latest":
            await consumer.seek_to_end(*uncommitted)
        else:
            await consumer.seek_to_beginning(*uncommitted)
    return committed


class BulkConsumer(faust_aiokafka.Consumer):
    """Fetcher loop that hands whole per-partition record lists to a handler.

    It keeps everything ``getmany``/``_drain_messages``/Conductor/Stream do
    that affects offsets or rebalances, but does it once per batch:

    * flow control: fetch through the stock ``_wait_next_records`` (it waits
      while flow is stopped and fetches only active partitions); if records
      arrive after flow stopped, drop them and ``perform_seek()`` back to the
      committed offsets, as stock ``getmany`` does; stop handing out batches
      once flow stops or partitions are revoked partway through a fetch;
    * partition filter: skip partitions that are not active (paused or
      revoked), using the same rule as stock;
    * ``_read_offset``: drop records below it (they come back after a seek),
      record offset gaps (compaction, transaction markers) with
      ``_add_gap`` so ``_new_offset`` can commit past them, then advance it;
    * in-flight tracking: add one marker ``Message`` per batch to
      ``_unacked_messages``, so ``wait_empty()`` (called when partitions are
      revoked and on shutdown) waits for the handler call to finish;
    * ``broker_commit_every``; lag monitoring through
      ``monitor.track_tp_end_offset``; ``monitor.stream_inbound_time`` for
      the livelock detector.
    """

    #: Revocations seen so far. A batch remembers the count it was fetched under; once a revocation has
    #: happened since, its records are not acked (see ``ack_records``).
    revocations: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        use_fetched_records()
        # Partitions whose committed offset is known since their last assignment (from perform_seek): the
        # baseline _new_offset needs. None as a value: Kafka has no commit for it (a new group).
        self._baselines: Dict[TP, Optional[int]] = {}

    def _new_consumer_thread(self) -> BulkConsumerThread:
        return BulkConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _trace(self, kind: str, **fields: Any) -> None:
        trace: Optional[OffsetTrace] = getattr(self.app, "offset_trace", None)
        if trace is not None:
            trace.write(kind, **fields)

    async def on_partitions_assigned(self, assigned: Set[TP], generation_id: int = 0) -> None:
        self._trace("assigned", tps=sorted(map(tp_name, assigned)), generation=generation_id)
        await super().on_partitions_assigned(assigned, generation_id)

    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        did_commit = await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)
        self._trace("commit", offsets={tp_name(tp): offset for tp, offset in offsets.items()}, ok=did_commit)
        return did_commit

    async def on_partitions_revoked(self, revoked: Set[TP]) -> None:
        """Store, ack and commit everything fetched so far, then let stock code forget the partitions.

        Stock ``Consumer.on_partitions_revoked`` drops ``_acked``/``_committed_offset``/``_read_offset`` of
        the revoked partitions *before* the app stops the flow and waits for handlers, and the app's
        ``wait_empty()`` does not see a flush started by a timer. A batch stored after that point was
        acked with no committed baseline (stock ``_should_commit`` then accepts any offset) or under the
        next assignment. So, while the state is still whole: stop the flow, wait for handlers in flight,
        run the app's drain hooks (store what is buffered; its acks count), commit. Then the revocation
        count moves on, and any batch fetched before it that is stored later is not acked: the partition's
        owner reads it again from the committed offset (the sink skips what is stored).
        """
        if not self.app.should_stop:
            try:
                await asyncio.wait_for(self._drain(), DRAIN_BEFORE_REVOKE_S)
            except TimeoutError:  # e.g. the sink is down: what is still buffered is read again later
                self.log.warning("pre-revoke drain took over %.0f s; its acks will not count", DRAIN_BEFORE_REVOKE_S)
            try:
                await self.commit()
            except Exception as exc:  # the stock path still commits after
                self.log.warning("pre-revoke commit failed: %r", exc)
        self.revocations += 1
        self._trace("revoked", tps=sorted(map(tp_name, revoked)), revocations=self.revocations)
        for tp in revoked:
            self._baselines.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def _drain(self) -> None:
        self.stop_flow()
        await self.wait_empty()
        for drain in getattr(self.app, "drain_hooks", ()):
            await drain()

    async def perform_seek(self) -> None:
        """Seek to the committed offsets and keep them as the commit baseline, 0 included.

        Stock code stores a committed offset of 0 as None, which ``_should_commit`` reads as "anything
        may be committed"; the baseline keeps the real value.
        """
        committed = await self.seek_to_committed()
        self._read_offset.update({tp: offset if offset is not None and offset >= 0 else None
                                  for tp, offset in committed.items()})
        self._committed_offset.update({tp: offset or None for tp, offset in committed.items() if offset is not None})
        self._baselines.update({tp: offset if offset is not None and offset >= 0 else None
                                for tp, offset in committed.items()})
        self._trace("seek_committed", offsets={tp_name(tp): offset for tp, offset in committed.items()})

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Stock rule, except that the committed offset itself may be a gap: it is the next offset to read."""
        committed = self._committed_offset[tp]
        if committed is not None and offset_from < committed:
            offset_from = committed
        if offset_from <= offset_to:
            self._trace("gap", tp=tp_name(tp), first=offset_from, last=offset_to)
            gaps = self._gap[tp]
            gaps.addi(offset_from, offset_to + 1)
            await asyncio.sleep(0)
            gaps.merge_overlaps()

    def _new_offset(self, tp: TP) -> Optional[int]:
        """The offset to commit for ``tp``: one past the run of acked (or gap) offsets that starts exactly at
        the committed offset; None if there is none.

        Stock ``_new_offset`` differs in two ways that commit past messages nobody processed: it accepts a
        run starting one *after* the committed offset (the committed offset is the next one to read, so
        that message is skipped), and with no committed offset it accepts a run starting anywhere. Here a
        partition with no baseline since its last assignment (revoked, not seeked again) commits nothing.
        """
        acked = self._acked[tp]
        if not acked:
            return None
        committed = self._committed_offset[tp]
        if committed is None:
            if tp not in self._baselines:
                return None
            committed = self._baselines[tp]  # 0, or None: Kafka has no commit (a new group starts anywhere)
        highest = max(acked)
        gaps = self._gap[tp]
        if gaps:
            covered = sorted(gaps.overlap(0, highest), key=lambda interval: interval.begin)
            if covered:
                filled = [offset for interval in covered for offset in range(interval.begin, interval.end)]
                acked.extend(filled)
                gaps.chop(0, max(filled[-1], highest + 1))
        acked.sort()
        if committed is not None:
            stale = bisect_left(acked, committed)  # already committed (a redelivery): drop
            if stale:
                self._acked_index[tp].difference_update(acked[:stale])
                del acked[:stale]
            if not acked or acked[0] != committed:
                return None
        end = len(acked)
        if acked[-1] - acked[0] != end - 1:  # not one run without repeats: find where the first run ends
            end = 1
            while end < len(acked) and acked[end] <= acked[end - 1] + 1:
                end += 1
        run = acked[:end]
        del acked[:end]
        self._acked_index[tp].difference_update(run)
        return run[-1] + 1

    # ---------------------------------------------------------------- acking
    def ack_records(self, tp: TP, records: Sequence[ConsumerRecord], fetched_at: Optional[int] = None) -> int:
        """Mark ``records`` (one partition) processed; returns how many counted.

        The bulk version of ``Consumer.ack``.  It applies the same rules:
        acks count only for topics with acks enabled, skip offsets below the
        committed one, and skip offsets already acked.  It takes the same
        ``ack_lock``.  ``fetched_at``: ``revocations`` when the records were
        fetched; if partitions were revoked since, nothing is acked (the
        records are read again from the committed offset by whoever owns the
        partition now, and acking them could commit past records of the new
        assignment that were not processed).
        """
        if not records or (fetched_at is not None and fetched_at != self.revocations):
            return 0
        first, last = records[0].offset, records[-1].offset
        # A fetched slice is in ascending offset order; without holes (nearly always) its offsets are a range,
        # which the set and list below take in without a Python step per record.
        offsets: Sequence[int] = (range(first, last + 1) if last - first == len(records) - 1
                                  else [r.offset for r in records])
        with ack_lock:
            if not self.app.topics.acks_enabled_for(tp.topic):
                return 0
            committed = self._committed_offset[tp]
            if committed is not None and offsets[0] < committed:
                offsets = [o for o in offsets if o >= committed]
            acked_index = self._acked_index[tp]
            if not acked_index.isdisjoint(offsets):  # redelivery after a seek
                offsets = [o for o in offsets if o not in acked_index]
            acked_index.update(offsets)
            self._acked[tp].extend(offsets)
            self._n_acked += len(offsets)
            notify(self._waiting_for_ack)
            return len(offsets)

    # -------------------------------------------------------------- delivery
    def _accept(self, tp: TP, records: List[ConsumerRecord]) -> Tuple[List[ConsumerRecord], List[Gap]]:
        """Drop records below the read offset; return the rest and the offsets missing before them.

        ``_read_offset`` is the next offset to read here, as after a seek (stock code mixes that with the
        last offset read, so the gap after a seek missed the seek offset and the one after a delivery
        held the next record). Gaps are inclusive ranges of offsets that do not exist (compaction,
        transaction markers, retention), which ``_new_offset`` may commit past.
        """
        r_offset: Optional[int] = self._read_offset[tp]
        first, last = records[0].offset, records[-1].offset
        # Fast path (nearly always): nothing below the read offset and no
        # holes inside the batch, so we only look at the two ends.
        if (r_offset is None or first >= r_offset) and last - first == len(records) - 1:
            gaps = [(r_offset, first - 1)] if r_offset is not None and first > r_offset else []
            return records, gaps
        accepted: List[ConsumerRecord] = []
        gaps = []
        for record in records:
            offset = record.offset
            if r_offset is None or offset >= r_offset:
                if r_offset is not None and offset > r_offset:
                    gaps.append((r_offset, offset - 1))
                accepted.append(record)
                r_offset = offset + 1
        return accepted, gaps

    async def _deliver(self, tp: TP, records: List[ConsumerRecord], handler: BatchHandler) -> None:
        fetched = len(records)
        records, gaps = self._accept(tp, records)
        self._trace("deliver", tp=tp_name(tp), first=records[0].offset if records else None,
                    last=records[-1].offset if records else None, dropped=fetched - len(records),
                    revocations=self.revocations)
        if not records:
            return
        if gaps and self.app.topics.acks_enabled_for(tp.topic):
            for start, end in gaps:
                await self._add_gap(tp, start, end)
        last = records[-1]
        # One marker message per batch in _unacked_messages: wait_empty()
        # (partition revocation, shutdown) then waits for this handler call.
        marker = self._to_message(tp, last)
        marker.tracked = True
        self.track_message(marker)  # -> _unacked_messages + sensors.on_message_in
        # The livelock detector (verify_event_path) reads this; the Monitor
        # only sets it in on_stream_event_in, which never runs on this path,
        # so without it every lagging partition is reported "stream idle"
        # once stream_processing_timeout has passed.
        self.app.monitor.stream_inbound_time[tp] = monotonic()
        revocations = self.revocations
        task = asyncio.ensure_future(handler(tp, records))
        task.add_done_callback(lambda _: self._release(marker))
        # shield(): on rebalance and on shutdown Faust stops the fetcher
        # (cancelling this coroutine) *before* wait_empty().  Stock Faust only
        # loses queue hand-off there; a cancelled handler would lose half a
        # batch.  So the handler runs to completion, acks, and then the
        # marker goes, which is what wait_empty() waits for.
        await asyncio.shield(task)
        # A rebalance while the handler ran has set the read offset of the new assignment (seek to the
        # committed offset): leave it, or the next fetch would look like a hole or like a re-read.
        if self.revocations == revocations:
            self._read_offset[tp] = last.offset + 1

    async def _rewind(self, undelivered: Dict[TP, int]) -> None:
        """Seek partitions whose fetched records were not handed out back to the first of them.

        Records are left out when their partition is paused or when the flow stops part-way through a
        fetch, but the fetch position has already moved past them. Without a seek the next batch of a
        partition this worker still holds starts after a hole, which ``_accept`` takes for a compaction
        gap and commits past: those records would never be processed by anyone (seen as lost events with
        three workers and a rebalance). Stock ``getmany`` seeks back to the committed offsets for the same
        reason when flow stops; this seeks only what was skipped. Only within one assignment: after a
        revocation the partitions kept were seeked to their committed offsets, and seeking them to the
        skipped records would jump *forward* over whatever lies between.
        """
        if not undelivered:
            return
        assigned = self.assignment()
        for tp, offset in undelivered.items():
            if tp not in assigned:
                continue  # revoked: its next owner starts from the committed offset
            self._trace("rewind", tp=tp_name(tp), offset=offset)
            try:
                await self.seek(tp, offset)
            except Exception as exc:
                self.log.warning("seek back to %s@%d failed: %r", tp, offset, exc)

    def _release(self, marker: Message) -> None:
        """Handler finished (ok, error or cancelled): drop the batch marker.

        Offsets the handler did not ack stay uncommitted (at-least-once).
        """
        with ack_lock:
            marker.acked = True
            self._unacked_messages.discard(marker)
        self.app.sensors.on_message_out(marker.tp, marker.offset, marker)
        notify(self._waiting_for_ack)

    async def _deliver_stock(self, tp: TP, records: List[ConsumerRecord]) -> None:
        """Topics without a batch handler: stock per-message semantics."""
        records, gaps = self._accept(tp, records)
        if gaps and self.app.topics.acks_enabled_for(tp.topic):
            for start, end in gaps:
                await self._add_gap(tp, start, end)
        for record in records:
            if not self.flow_active:
                break
            message = self._to_message(tp, record)
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            self._read_offset[tp] = record.offset + 1

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        handlers = cast(Dict[str, BatchHandler], getattr(self.app, "batch_handlers", {}))
        if not handlers:
            return await super()._drain_messages(fetcher)
        app = self.app
        consumer_stopped = cast(Service, self)._stopped.is_set
        fetcher_stopped = cast(Service, fetcher)._stopped.is_set
        buffered = self._buffered_partitions
        monitor = app.monitor
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag("FETCHING")
                records, active = await self._wait_next_records(1.0)
                revocations = self.revocations
                await self.sleep(0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        self.log.warning("seek while flow stopped failed: %r", exc)
                    continue
                delivered: Set[TP] = set()
                for tp, recs in records.items():
                    if not self.flow_active or self.revocations != revocations:
                        break
                    if active is not None and tp not in active and tp not in buffered:
                        continue
                    delivered.add(tp)
                    monitor.track_tp_end_offset(tp, self.highwater(tp))
                    handler = handlers.get(tp.topic)
                    if handler is not None:
                        await self._deliver(tp, recs, handler)
                    else:
                        await self._deliver_stock(tp, recs)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                if self.revocations == revocations:  # else the new assignment was seeked to the committed offsets
                    await self._rewind({tp: recs[0].offset for tp, recs in records.items()
                                        if recs and tp not in delivered})
                self.diag.unset_flag("FETCHING")
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Batch drain raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag("FETCHING")


class BulkTransport(faust_aiokafka.Transport):
    """aiokafka transport whose consumer is :class:`BulkConsumer`."""

    Consumer = BulkConsumer


class TablelessManager(TableManager):
    """Faust's table manager without its start-up grace second when the app has no tables.

    Stock ``TableManager.on_start`` sleeps one second before it registers the tables' changelog channels,
    so that tables defined while the app starts are still picked up. Every worker start and every restart
    after a crash paid that second before joining the group. Tables are defined before the app starts (an
    app that defines one later gets Faust's own "too late" error either way), so with none there is
    nothing to wait for.
    """

    async def on_start(self) -> None:
        if self:
            await super().on_start()
        elif not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class BulkApp(faust.App):
    """``faust.App`` plus ``@app.batch_handler(topic)``.

    ``App._new_transport`` is the one place the app builds its consumer-side
    transport (``app.consumer`` -> ``transport.create_consumer`` ->
    ``Transport.Consumer``).  Overriding it changes the consumer class and
    leaves the broker URL and the producer transport as they are.
    """

    batch_handlers: Dict[str, BatchHandler]
    offset_trace: Optional[OffsetTrace] = None  # streams.offset_trace, when the worker is asked for one
    #: Awaited before partitions are revoked, after the handlers in flight finished: each stores (and acks)
    #: what its handler buffered, so that it is acked and committed under the assignment it was read in.
    drain_hooks: List[Callable[[], Awaitable[None]]]
    _batch_topics: List[TopicT]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.batch_handlers = {}
        self.drain_hooks = []
        self._batch_topics = []
        kwargs.setdefault("TableManager", TablelessManager)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> faust_aiokafka.Transport:
        return BulkTransport(self.conf.broker_consumer, self)

    def batch_handler(self, topic: TopicT) -> Callable[[BatchHandler], BatchHandler]:
        def register(fn: BatchHandler) -> BatchHandler:
            for name in topic.topics:
                self.batch_handlers[name] = fn
            self._batch_topics.append(topic)
            return fn
        return register

    async def on_start(self) -> None:
        await super().on_start()
        # The Conductor computes the subscription and the acking topics from
        # its registered topics.  Register ours inside the running loop,
        # before the Conductor subscribes (it starts after App.on_start).
        for topic in self._batch_topics:
            self.topics.add(topic)
