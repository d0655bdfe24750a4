"""The sustained bench's load: pooled events re-stamped (unit tests, no Kafka) and a short climb on a real broker."""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference_murmur2

from pulse.bench import SustainedOptions, run_sustained
from pulse.settings import Settings
from pulse.simulate import SimulationOptions, build_generator
from pulse.sustained_load import EventPool, PoolError, Restamper, default_partitions, murmur2
from schemas.events import EVENT_MODELS
from simulators.generate import Emitted

STREAMS = ["payments", "dossiers", "identity"]
PARTITIONS = [4, 3, 5]  # different per stream, so a partition taken from the wrong stream's count shows
CHANGED = {"event_id", "event_time", "due_time", "dossier_id"}


@pytest.fixture(scope="module")
def pool() -> tuple[list[Emitted], EventPool]:
    # Office hours in Vietnam (dossiers are only submitted then): all three streams are in the pool.
    options = SimulationOptions(seed=3, rate=4000, start=datetime(2026, 1, 6, 3, 0, tzinfo=timezone.utc),
                                demo_key=True)
    emitted = list(build_generator(options, Settings()).events(1500))
    return emitted, EventPool(emitted, STREAMS)


def _rows(keys: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1)


def test_murmur2_of_a_slice_equals_the_default_partitioners() -> None:
    rng = random.Random(5)
    for length in (1, 2, 3, 4, 5, 7, 18, 36, 37):
        keys = [rng.randbytes(length) for _ in range(300)]
        assert murmur2(_rows(keys)).tolist() == [reference_murmur2(key) for key in keys], length
        chosen = default_partitions(_rows(keys), 6).tolist()
        assert chosen == [DefaultPartitioner()(key, list(range(6)), list(range(6))) for key in keys]
        assert len(set(chosen)) == 6


def _copies(pool: EventPool, count: int, start_ms: int) -> tuple[Restamper, list[int], list]:
    restamper = Restamper(pool, PARTITIONS, random.Random(11))
    times, taken = [], []
    for first in range(0, count, 700):  # slices, as the sender takes them
        chunk = [start_ms + index // 4 for index in range(first, min(count, first + 700))]
        times += chunk
        copies = restamper.take(chunk)
        taken += zip(copies.streams, copies.keys, copies.values, copies.partitions, strict=True)
    return restamper, times, taken


def test_copies_differ_from_the_pool_only_by_id_and_time(pool: tuple[list[Emitted], EventPool]) -> None:
    emitted, event_pool = pool
    assert {e.stream for e in emitted} == set(STREAMS)
    start_ms = 1_795_000_000_000
    count = len(emitted) * 5 // 2  # two and a half passes
    restamper, times, taken = _copies(event_pool, count, start_ms)
    assert restamper.passes == 2

    ids, dossier_ids_by_pass = set(), [{}, {}, {}]
    for index, ((stream, key, value, partition), ms) in enumerate(zip(taken, times, strict=True)):
        original = emitted[index % len(emitted)]
        copy, source = orjson.loads(value), orjson.loads(original.value)
        assert STREAMS[stream] == original.stream
        assert {k: v for k, v in copy.items() if k not in CHANGED} == {k: v for k, v in source.items()
                                                                      if k not in CHANGED}
        assert list(copy) == list(source)  # same fields in the same order
        event_id = uuid.UUID(copy["event_id"])
        assert event_id.version == 4 and str(event_id) == copy["event_id"]
        ids.add(copy["event_id"])
        moment = datetime.fromisoformat(copy["event_time"])
        assert moment.utcoffset() == timedelta(hours=7) and round(moment.timestamp() * 1000) == ms
        if original.stream == "dossiers":
            assert key == copy["dossier_id"].encode() and len(key) == len(original.key)
            assert key[:6] == original.key[:6] and key != original.key
            # due_time moved with event_time: every event's on-time verdict stays the pool's
            shift = moment - datetime.fromisoformat(source["event_time"])
            assert datetime.fromisoformat(copy["due_time"]) == datetime.fromisoformat(source["due_time"]) + shift
            # one dossier's stages share one new id within a pass; every pass is a new set of dossiers
            assert dossier_ids_by_pass[index // len(emitted)].setdefault(original.key, key) == key
        else:
            assert key == copy["event_id"].encode()
        assert partition == DefaultPartitioner()(key, list(range(PARTITIONS[stream])), [])
        EVENT_MODELS[original.stream].model_validate_json(value)  # still valid: VietQR, bounds, shapes
    assert len(ids) == count, "an event id was used twice"
    assert not ids & {orjson.loads(e.value)["event_id"] for e in emitted}
    first, second = dossier_ids_by_pass[0], dossier_ids_by_pass[1]
    assert first and not set(first.values()) & set(second.values())
    assert times == sorted(times) and times[-1] > times[0]


def test_the_pool_refuses_events_it_cannot_restamp_faithfully() -> None:
    good = Emitted("payments", b"0" * 36, orjson.dumps({"type": "payment", "event_id": "0" * 36,
                                                         "event_time": "2026-01-05T07:00:00.000+07:00"}), 0.0)
    EventPool([good], STREAMS)
    with pytest.raises(PoolError, match="keyed by something else"):
        EventPool([good._replace(key=b"other")], STREAMS)
    with pytest.raises(PoolError, match="layout"):
        EventPool([good._replace(value=orjson.dumps({"type": "payment", "event_id": "0" * 36}))], STREAMS)
    reordered = orjson.dumps({"type": "payment", "event_time": "2026-01-05T07:00:00.000+07:00", "event_id": "0" * 36})
    with pytest.raises(PoolError, match="layout"):
        EventPool([good._replace(value=reordered)], STREAMS)


def test_a_short_climb_holds_and_the_worker_stores_every_event_offered(kafka_settings: Settings, tmp_path) -> None:
    settings = kafka_settings.model_copy(update={"state_dir": tmp_path})
    # Steps of a few seconds at low rates: a step's whole input stays under its lag bound, and a stall of up to
    # a quarter of a second (a busy machine) still leaves the offered rate within the verdict's 5 %.
    options = SustainedOptions(start_rate=200.0, factor=2.0, max_rate=400.0, step_s=5.0, pool_events=1000)
    report = run_sustained(settings, options, say=print)
    print({k: v for k, v in report.items() if k != "steps"}, report["steps"])
    assert [step["target_events_per_s"] for step in report["steps"]] == [200, 400]
    assert all(step["held"] for step in report["steps"]), report["steps"]
    assert report["stopped_by"] == "max_rate"
    assert report["sent_events"] == sum(step["sent"] for step in report["steps"]) == 200 * 5 + 400 * 5
    # more than one pass over the pool, and nothing dead-lettered (`too_late`, `future_time`, anything else)
    assert report["stored_events"] == report["sent_events"]
    assert report["dead_letters"] == 0
    assert report["sustained_events_per_s"] == max(step["offered_events_per_s"] for step in report["steps"])
    assert all(step["producer_cpu_us_per_event"] > 0 for step in report["steps"])
    assert not list((tmp_path / "bench").glob("*/clickhouse")), "the bench's store was left behind"
