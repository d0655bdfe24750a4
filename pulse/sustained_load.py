"""The load of `pulse bench --sustained`: pooled events, re-stamped, sent in record batches by a process of its own.

Generating each event live and sending it through kafka-python's `send` cost ~90-120 us of CPU a message, so
on two cores the bench's producer topped out near 8,300 events/s while the worker drains 40,000+: the climb
measured the producer. Here the simulator runs once, before the climb, to fill a pool (the same mix of the
three streams as the bench); each step then sends copies of the pool's events in order, each copy with

- a fresh, unique `event_id` (a bijection of a counter, so unique by construction, spread over the whole id
  space like random ids so that the worker's event_index lookup sees the same key spread as live);
- an `event_time` on the step's clock: the send schedule's time minus EVENT_TIME_BEHIND_S, so watermarks,
  windows and the future bound see a live source (nothing `too_late` or `future_time`);
- for dossiers, `due_time` moved by the same amount (each event's on-time verdict is the pool's), and the
  `dossier_id` renewed once per pass over the pool (each pass is a new set of dossiers, whose stages keep
  sharing one id);

and every other byte as the simulator wrote it (VietQR payloads and their CRC untouched). Keys are what the
simulator keys by (`event_id`, or `dossier_id` for dossiers) and partitions what aiokafka's and kafka-python's
default murmur2 partitioner picks for them, computed for a whole slice at once with numpy.

The pool is as large as DEFAULT_POOL_EVENTS so that one pass holds well over the worker's VietQR cache
(65,536 payloads) of distinct payloads: a payload coming round again has been evicted, as it would be live.

Pacing: every SLICE_S the sender builds what is due, one aiokafka record batch per partition, and hands them
over with `send_batch` (acks=all with idempotence, as the project's other producers; one batch per partition
and slice makes that a sequence number per batch, not per message). It runs in a spawned process so that
neither the bench's lag sampling nor its GIL paces it, and it reports the CPU it used per step.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from schemas.errors import PulseError
from simulators.generate import Emitted, RFC3339Stamps
from streams.record_batches import send_record_batches

DEFAULT_POOL_EVENTS = 300_000
EVENT_TIME_BEHIND_S = 1.0  # event time = the message's place in the send schedule, this much before it
SLICE_S = 0.02  # what is due is built and sent every SLICE_S
MAX_BACKLOG_S = 1.0  # after a stall the sender catches up at most this much lost time, as simulators.output.Pacer
MAX_BATCH_BYTES = 1 << 20
READY_TIMEOUT_S = 600.0

_FIELDS = (b'"event_id":"', b'"event_time":"', b'"dossier_id":"', b'"due_time":"')
_ID_LEN, _TIME_LEN, _DOSSIER_HEX = 36, 29, 12
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# The 16 places in an id's 36 characters that carry the 64 bits of the mixed counter (8-4-"4"xxx-v x ..-...).
_ID_NIBBLE_COLUMNS = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 15, 16, 17, 20])
_NIBBLE_SHIFTS = np.arange(60, -4, -4, dtype=np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it mod 2**64 is a bijection


class PoolError(PulseError, ValueError):
    """A generated event does not have the layout the re-stamping relies on."""


def murmur2(keys: np.ndarray) -> np.ndarray:
    """Kafka's murmur2 (as aiokafka.partitioner.murmur2 and the Java client) of each row of an (N, L) uint8
    array of equally long keys, as uint32."""
    count, length = keys.shape
    m = np.uint32(0x5BD1E995)
    h = np.full(count, 0x9747B28C ^ length, dtype=np.uint32)
    words = keys[:, : length & ~3].copy().view("<u4")
    for column in range(length // 4):
        k = words[:, column] * m
        k ^= k >> np.uint32(24)
        k *= m
        h *= m
        h ^= k
    tail = keys[:, length & ~3:].astype(np.uint32)
    extra = length % 4
    if extra:
        for place in range(extra - 1, -1, -1):
            h ^= tail[:, place] << np.uint32(8 * place)
        h *= m
    h ^= h >> np.uint32(13)
    h *= m
    h ^= h >> np.uint32(15)
    return h


def default_partitions(keys: np.ndarray, partition_count: int) -> np.ndarray:
    """The partition the default partitioner picks for each key (partitions numbered 0..count-1)."""
    return (murmur2(keys) & np.uint32(0x7FFFFFFF)) % np.uint32(partition_count)


@dataclass(frozen=True)
class PooledEvent:
    """One generated event cut around the fields a copy changes: `segments` are the bytes between them."""

    stream: int
    segments: tuple[bytes, ...]  # 3 segments (event_id, event_time between) or 5 (then dossier_id, due_time)
    event_ms: int
    due_ms: int = 0
    dossier_prefix: bytes = b""  # "HS-52-"
    dossier_number: int = 0  # the 48 bits written as 12 hex digits after the prefix


def _ms_of(text: bytes) -> int:
    return round(datetime.fromisoformat(text.decode()).timestamp() * 1000)


def pooled(emitted: Emitted, stream: int) -> PooledEvent:
    """Cut one generated event; refuses a layout other than the simulator's (fields in their order, once)."""
    value = emitted.value
    spans: list[tuple[int, int]] = []
    for name in _FIELDS:
        at = value.find(name)
        if at < 0:
            continue
        if value.find(name, at + 1) >= 0:
            raise PoolError(f"{name.decode()} appears twice in {value[:80]!r}")
        start = at + len(name)
        spans.append((start, value.index(b'"', start)))
    if len(spans) not in (2, 4) or spans != sorted(spans):
        raise PoolError(f"unexpected event layout: {value[:80]!r}")
    segments, last = [], 0
    for start, end in spans:
        segments.append(value[last:start])
        last = end
    segments.append(value[last:])
    texts = [value[start:end] for start, end in spans]
    if len(texts[0]) != _ID_LEN or len(texts[1]) != _TIME_LEN:
        raise PoolError(f"unexpected event_id or event_time: {texts[:2]!r}")
    if len(texts) == 2:
        if emitted.key != texts[0]:
            raise PoolError(f"an event keyed by something else than its event_id: {emitted.key!r}")
        return PooledEvent(stream, tuple(segments), _ms_of(texts[1]))
    dossier, due = texts[2], texts[3]
    if emitted.key != dossier or len(due) != _TIME_LEN:
        raise PoolError(f"unexpected dossier_id or due_time: {texts[2:]!r}")
    return PooledEvent(stream, tuple(segments), _ms_of(texts[1]), _ms_of(due), dossier[:-_DOSSIER_HEX],
                       int(dossier[-_DOSSIER_HEX:], 16))


class EventPool:
    """Generated events, cut for re-stamping, in the generator's order; equal segments are shared."""

    def __init__(self, events: Iterable[Emitted], streams: Sequence[str]) -> None:
        self.streams = list(streams)
        number = {stream: index for index, stream in enumerate(self.streams)}
        shared: dict[bytes, bytes] = {}
        self.events: list[PooledEvent] = []
        for emitted in events:
            event = pooled(emitted, number[emitted.stream])
            segments = tuple(shared.setdefault(segment, segment) if len(segment) < 64 else segment
                             for segment in event.segments)
            self.events.append(replace(event, segments=segments))
        if not self.events:
            raise PoolError("the pool is empty")

    def __len__(self) -> int:
        return len(self.events)


@dataclass
class Copies:
    """A slice of re-stamped copies: per message its stream (index), key, value and partition."""

    streams: list[int]
    keys: list[bytes]
    values: list[bytes]
    partitions: list[int]


class Restamper:
    """Copies of the pool's events, in pool order and round again, each re-stamped (module docstring)."""

    def __init__(self, pool: EventPool, partition_counts: Sequence[int], rng: random.Random | None = None) -> None:
        rng = rng or random.Random(random.SystemRandom().getrandbits(64))
        self.pool = pool
        self.partition_counts = list(partition_counts)
        self.keyed_by_dossier = [False] * len(pool.streams)
        for event in pool.events:
            self.keyed_by_dossier[event.stream] = bool(event.dossier_prefix)
        self.emitted = 0  # copies made so far: the counter behind the ids
        self.position = 0  # next pool index
        self.passes = 0
        self._rng = rng
        self._salt = np.uint64(rng.getrandbits(64))
        self._dossier_salt = rng.getrandbits(48)  # new dossier ids: the pool's 48 bits xor this, new each pass
        self._stamps = RFC3339Stamps()
        # The id characters no counter bit lands on: version 4, a variant digit, 13 hex digits of this run.
        tail = "%04x%012x" % (0x8000 | rng.getrandbits(12), rng.getrandbits(48))
        template = f"00000000-0000-4000-{tail[:4]}-{tail[4:]}".encode()
        self._id_template = np.frombuffer(template, dtype=np.uint8)

    def event_ids(self, count: int) -> np.ndarray:
        """The next `count` event ids as a (count, 36) uint8 array of UUID text (version 4, lower-case hex)."""
        counter = np.arange(self.emitted, self.emitted + count, dtype=np.uint64)
        mixed = counter * _MIX + self._salt
        mixed ^= mixed >> np.uint64(29)  # xor with a right shift: a bijection too; spreads the high bits
        nibbles = (mixed[:, None] >> _NIBBLE_SHIFTS) & np.uint64(0xF)
        ids = np.tile(self._id_template, (count, 1))
        ids[:, _ID_NIBBLE_COLUMNS] = _HEX[nibbles]
        self.emitted += count
        return ids

    def take(self, times_ms: Sequence[int]) -> Copies:
        """One copy per event time given (epoch ms), continuing through the pool."""
        count = len(times_ms)
        ids = self.event_ids(count)
        id_texts = ids.tobytes()
        events, size = self.pool.events, len(self.pool.events)
        stamp, other = self._stamps, self._stamps.other
        streams, keys, values = [], [], []
        position, dossier_salt = self.position, self._dossier_salt
        for index, ms in enumerate(times_ms):
            event = events[position]
            event_id = id_texts[index * _ID_LEN:(index + 1) * _ID_LEN]
            s = event.segments
            when = stamp(ms).encode()
            if event.dossier_prefix:
                key = b"%s%012X" % (event.dossier_prefix, event.dossier_number ^ dossier_salt)
                due = other(event.due_ms + ms - event.event_ms).encode()
                values.append(b"".join((s[0], event_id, s[1], when, s[2], key, s[3], due, s[4])))
            else:
                key = event_id
                values.append(b"".join((s[0], event_id, s[1], when, s[2])))
            streams.append(event.stream)
            keys.append(key)
            position += 1
            if position == size:
                position = 0
                self.passes += 1
                dossier_salt = self._dossier_salt = self._rng.getrandbits(48)
        self.position = position
        return Copies(streams, keys, values, self._partitions(streams, keys, ids))

    def _partitions(self, streams: list[int], keys: list[bytes], ids: np.ndarray) -> list[int]:
        stream_of = np.array(streams, dtype=np.int64)
        partitions = np.zeros(len(streams), dtype=np.int64)
        for stream, by_dossier in enumerate(self.keyed_by_dossier):
            rows = np.flatnonzero(stream_of == stream)
            if not len(rows):
                continue
            if by_dossier:
                chosen = [keys[row] for row in rows]
                rows_keys = np.frombuffer(b"".join(chosen), dtype=np.uint8).reshape(len(rows), -1)
            else:
                rows_keys = ids[rows]
            partitions[rows] = default_partitions(rows_keys, self.partition_counts[stream])
        return partitions.tolist()


# -- the sending process ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadJob:
    """What the sending process needs (picklable: it is spawned)."""

    settings: Any  # pulse.settings.Settings with the run's topic prefix
    start_rate: float
    pool_events: int


def build_pool(job: LoadJob) -> EventPool:
    """The simulator's events as the old bench producer made them at the climb's first rate (no faults)."""
    from pulse.simulate import SimulationOptions, build_generator, event_time_start

    seconds = job.pool_events / job.start_rate
    start = event_time_start(datetime.now(timezone.utc), seconds)
    options = SimulationOptions(seed=None, rate=job.start_rate, start=start, speed=1.0, demo_key=True)
    generator = build_generator(options, job.settings)
    return EventPool(generator.events(job.pool_events), list(job.settings.topics.streams))


class Sender:
    """Paces copies into Kafka, one record batch per partition and slice."""

    def __init__(self, producer: Any, restamper: Restamper, topics: list[str]) -> None:
        self.producer, self.restamper, self.topics = producer, restamper, topics

    async def offer(self, rate: float, seconds: float) -> dict[str, float]:
        total = round(rate * seconds)
        cpu, began = time.process_time(), time.monotonic()
        anchor_ms = (time.time() - EVENT_TIME_BEHIND_S) * 1000  # event time of the step's first message
        lost, sent, deliveries = 0.0, 0, []
        first_ms = last_ms = 0
        while True:
            due = min(total, int((time.monotonic() - began - lost) * rate) + 1)
            if due - sent > rate * MAX_BACKLOG_S:  # a stall: let the schedule slip instead of bursting
                lost += (due - sent) / rate - MAX_BACKLOG_S
                due = sent + int(rate * MAX_BACKLOG_S)
            if due > sent:
                times = [int(anchor_ms + (index / rate + lost) * 1000) for index in range(sent, due)]
                first_ms, last_ms = first_ms or times[0], times[-1]
                deliveries += await self.send(self.restamper.take(times))
                sent = due
            if sent >= total:
                break
            await asyncio.sleep(SLICE_S)
        handed_over = time.monotonic() - began
        await asyncio.gather(*deliveries)  # every batch acknowledged (acks=all) or this raises
        return {"sent": sent, "seconds": handed_over, "cpu_s": time.process_time() - cpu,
                "first_event_ms": first_ms, "last_event_ms": last_ms}

    async def send(self, copies: Copies) -> list[asyncio.Future]:
        by_partition: dict[tuple[int, int], list[tuple[bytes, bytes]]] = defaultdict(list)
        for stream, partition, key, value in zip(copies.streams, copies.partitions, copies.keys, copies.values):
            by_partition[stream, partition].append((key, value))
        deliveries = []
        for (stream, partition), messages in by_partition.items():
            deliveries += await send_record_batches(self.producer, self.topics[stream], partition, messages)
        return deliveries


async def _serve(connection: Any, job: LoadJob, pool: EventPool) -> None:
    from aiokafka import AIOKafkaProducer

    from pulse.kafka_security import aiokafka_options

    producer = AIOKafkaProducer(bootstrap_servers=job.settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                                max_batch_size=MAX_BATCH_BYTES, max_request_size=4 * MAX_BATCH_BYTES,
                                **aiokafka_options(job.settings))
    await producer.start()
    try:
        topics = [job.settings.topics.streams[stream] for stream in pool.streams]
        counts = [len(await producer.partitions_for(topic)) for topic in topics]
        sender = Sender(producer, Restamper(pool, counts), topics)
        connection.send(("ready", {"pool_events": len(pool)}))
        loop = asyncio.get_running_loop()
        while (command := await loop.run_in_executor(None, connection.recv))[0] == "offer":
            connection.send(("offered", await sender.offer(command[1], command[2])))
    finally:
        await producer.stop()


def serve(connection: Any, job: LoadJob) -> None:
    """The sending process: build the pool, then offer steps as the parent asks, until told to stop."""
    try:
        asyncio.run(_serve(connection, job, build_pool(job)))
    except BaseException:  # the parent raises it as a BenchError; the process ends either way
        connection.send(("error", traceback.format_exc()))
        raise


class LoadError(PulseError, RuntimeError):
    """The sending process failed or did not answer."""


class SustainedLoad:
    """The parent's handle on the sending process (a context manager: the process ends with it)."""

    def __init__(self, job: LoadJob) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=serve, args=(child, job), daemon=True, name="pulse-bench-load")
        self._process.start()
        child.close()

    def __enter__(self) -> SustainedLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _receive(self, expected: str, timeout_s: float | None) -> dict[str, Any] | None:
        if not self._connection.poll(timeout_s):
            if not self._process.is_alive():
                raise LoadError(f"the load process ended (exit code {self._process.exitcode})")
            return None
        try:
            kind, payload = self._connection.recv()
        except EOFError:
            raise LoadError(f"the load process ended (exit code {self._process.exitcode})") from None
        if kind != expected:
            raise LoadError(f"the load process failed:\n{payload}")
        return payload

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        ready = self._receive("ready", timeout_s)
        if ready is None:
            raise LoadError(f"the load process was not ready within {timeout_s:.0f} s")
        return ready

    def offer(self, rate: float, seconds: float, while_sending: Callable[[], None], every_s: float = 1.0
              ) -> dict[str, float]:
        """Offer `rate` events/s for `seconds`, calling `while_sending` every `every_s` until it is done."""
        self._connection.send(("offer", rate, seconds))
        while True:
            while_sending()
            report = self._receive("offered", every_s)
            if report is not None:
                return report

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._connection.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        self._connection.close()
