"""Batches close on bytes as well as on events, so large messages cannot grow the worker's buffers unbounded."""
from __future__ import annotations

import asyncio
import threading

from aiokafka.structs import ConsumerRecord
from faust.types import TP

from streams.app import Ingest, StreamConfig
from streams.pipeline import Message, Outcome


class _Topic:
    def send_soon(self, **_: object) -> None:
        pass


class _Consumer:
    revocations = 0  # no rebalance here

    def __init__(self) -> None:
        self.acked: list[int] = []

    def assignment(self) -> set[TP]:
        return {TP("in", 0)}

    def ack_records(self, tp: TP, records: list, fetched_at: int | None = None) -> None:
        self.acked += [record.offset for record in records]


class _App:
    """The few parts of the Faust app that Ingest uses (topics to publish on, the consumer to ack)."""

    should_stop = False
    offset_trace = None

    def __init__(self) -> None:
        self.consumer = _Consumer()

    def topic(self, *_: object, **__: object) -> _Topic:
        return _Topic()


class _Recorder:
    """Stands in for the Pipeline: records the size of each batch it is given."""

    def __init__(self) -> None:
        self.batches: list[list[Message]] = []

    def process(self, messages: list[Message]) -> Outcome:
        self.batches.append(messages)
        return Outcome([], [], len(messages), 0)


def _records(first: int, count: int, size: int) -> list[ConsumerRecord]:
    return [ConsumerRecord("in", 0, offset, 0, 0, None, b"x" * size, None, 0, size, []) for offset in
            range(first, first + count)]


def _config(max_events: int, max_bytes: int) -> StreamConfig:
    return StreamConfig(app_id="t", broker="kafka://127.0.0.1:1", input_topics=("in",), deadletter_topic="dl",
                        windows_topic="w", batch_max_events=max_events, batch_within_s=60.0, retry_max_s=1.0,
                        batch_max_bytes=max_bytes)


def _feed(config: StreamConfig, size: int, fetches: int) -> tuple[_Recorder, _App]:
    async def run() -> tuple[_Recorder, _App]:
        app, pipeline = _App(), _Recorder()
        ingest = Ingest(app, pipeline, config)  # type: ignore[arg-type]
        for fetch in range(fetches):
            await ingest.on_records(TP("in", 0), _records(fetch * 5, 5, size))
        if ingest.in_flight is not None:
            await ingest.in_flight
        return pipeline, app

    return asyncio.run(run())


def test_large_messages_close_a_batch_by_bytes_long_before_the_event_limit() -> None:
    pipeline, app = _feed(_config(max_events=10_000, max_bytes=10_000), size=1_000, fetches=4)
    # A flush takes what is pending when it runs, so a batch holds the bound plus at most one more fetch.
    assert pipeline.batches and all(len(batch) * 1_000 <= 10_000 + 5 * 1_000 for batch in pipeline.batches)
    assert app.consumer.acked == list(range(sum(len(batch) for batch in pipeline.batches)))


def test_without_a_byte_bound_the_same_messages_wait_for_the_event_limit_or_the_timer() -> None:
    pipeline, _ = _feed(_config(max_events=10_000, max_bytes=10_000_000), size=1_000, fetches=4)
    assert pipeline.batches == []


class _Gate(_Recorder):
    """A pipeline whose first batch stays in the store until released, as a busy sink does."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    def process(self, messages: list[Message]) -> Outcome:
        self.released.wait(timeout=60)
        return super().process(messages)


def test_the_timer_does_not_cut_short_a_batch_that_fills_while_the_previous_one_is_stored() -> None:
    """A busy worker stores full batches: records that pile up while a batch is being stored wait for it, and
    the time bound does not flush them early as a small batch (each batch pays fixed costs)."""
    config = StreamConfig(app_id="t", broker="kafka://127.0.0.1:1", input_topics=("in",), deadletter_topic="dl",
                          windows_topic="w", batch_max_events=10, batch_within_s=0.01, retry_max_s=1.0)

    async def run() -> tuple[_Gate, _App, list[int]]:
        app, pipeline = _App(), _Gate()
        ingest = Ingest(app, pipeline, config)  # type: ignore[arg-type]
        tp = TP("in", 0)
        await ingest.on_records(tp, _records(0, 10, 10))  # full: stored in the background
        await asyncio.sleep(0.01)  # the flush takes its batch (the fetch loop awaits between fetches)
        await ingest.on_records(tp, _records(10, 4, 10))
        await asyncio.sleep(0.05)  # these 4 are past the time bound now, but the store is busy
        await ingest.flush_if_due()
        pending_while_storing = [ingest.pending_count]
        asyncio.get_running_loop().call_later(0.1, pipeline.released.set)
        await ingest.on_records(tp, _records(14, 6, 10))  # full again: waits for the first batch to be stored
        if ingest.in_flight is not None:
            await ingest.in_flight
        await asyncio.sleep(0.05)
        await ingest.flush_if_due()  # nothing left to flush
        return pipeline, app, pending_while_storing

    pipeline, app, pending_while_storing = asyncio.run(run())
    assert pending_while_storing == [4]
    assert [[record.offset for record in batch] for batch in pipeline.batches] == [list(range(10)), list(range(10, 20))]
    assert app.consumer.acked == list(range(20))


def test_the_timer_flushes_a_slow_input_when_nothing_is_being_stored() -> None:
    config = StreamConfig(app_id="t", broker="kafka://127.0.0.1:1", input_topics=("in",), deadletter_topic="dl",
                          windows_topic="w", batch_max_events=10, batch_within_s=0.01, retry_max_s=1.0)

    async def run() -> tuple[_Recorder, _App]:
        app, pipeline = _App(), _Recorder()
        ingest = Ingest(app, pipeline, config)  # type: ignore[arg-type]
        await ingest.on_records(TP("in", 0), _records(0, 3, 10))
        await ingest.flush_if_due()  # not due yet
        await asyncio.sleep(0.05)
        await ingest.flush_if_due()
        return pipeline, app

    pipeline, app = asyncio.run(run())
    assert [len(batch) for batch in pipeline.batches] == [3] and app.consumer.acked == [0, 1, 2]


def test_after_a_long_store_the_fetch_loop_gets_a_quarter_of_the_time_bound_to_fill_the_next_batch() -> None:
    config = StreamConfig(app_id="t", broker="kafka://127.0.0.1:1", input_topics=("in",), deadletter_topic="dl",
                          windows_topic="w", batch_max_events=10, batch_within_s=1.0, retry_max_s=1.0)

    async def run() -> tuple[_Gate, list[int]]:
        app, pipeline = _App(), _Gate()
        ingest = Ingest(app, pipeline, config)  # type: ignore[arg-type]
        tp = TP("in", 0)
        await ingest.on_records(tp, _records(0, 10, 10))  # full: stored in the background, for longer than 1 s
        await asyncio.sleep(0.01)
        await ingest.on_records(tp, _records(10, 4, 10))
        await asyncio.sleep(1.05)
        pipeline.released.set()
        if ingest.in_flight is not None:
            await ingest.in_flight
        await ingest.flush_if_due()  # due by its age, but the store has only just ended
        pending = [ingest.pending_count]
        await asyncio.sleep(0.3)
        await ingest.flush_if_due()
        return pipeline, [*pending, ingest.pending_count]

    pipeline, pending = asyncio.run(run())
    assert pending == [4, 0]
    assert [len(batch) for batch in pipeline.batches] == [10, 4]
