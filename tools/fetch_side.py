"""What the worker's fetch side costs per message, alone: the real Faust app of streams.app (fetch loop, batching,
acks, commits, publishing) with a pipeline that stores nothing but returns window rows and dead letters in the
bench's proportions (one row per 80 messages, one dead letter per 500). The pipeline thread then does next to
nothing, so the process's CPU time between the first and the last batch is the fetch side's.

  python tools/fetch_side.py produce BOOTSTRAP N     # once: N messages of ~450 bytes, 3 topics x 4 partitions
  python tools/fetch_side.py run BOOTSTRAP N GROUP   # consume them all; prints CPU and wall seconds per 100k

Run it from a checkout (it imports that checkout's streams/) to compare two versions on the same messages, in
turns, with `uptime` beside each pair; CPU time moves far less with the machine's load than wall time.
"""
from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
import time
import uuid
from datetime import datetime, timezone

TOPICS = ("fetch-side.payments", "fetch-side.dossiers", "fetch-side.identity")
WINDOWS, DEAD = "fetch-side.windows", "fetch-side.dead"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def produce(bootstrap: str, count: int) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 4, 1) for topic in (*TOPICS, WINDOWS, DEAD)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    for n in range(count):
        key = str(uuid.uuid4()).encode()
        producer.send(TOPICS[n % 3], key=key, value=b'{"event_id": "%s", "pad": "%s"}' % (key, b"x" * 400))
    producer.flush()
    producer.close()


def run(bootstrap: str, count: int, group: str) -> None:
    sys.path.insert(0, os.getcwd())
    import faust

    from schemas.events import DeadLetter
    from streams.app import StreamConfig, create_app
    from streams.pipeline import Outcome

    marks: dict[str, tuple[float, float, int]] = {}
    window_start = datetime(2026, 1, 5, tzinfo=timezone.utc)

    class NoStore:
        seen = 0

        def process(self, messages: list) -> Outcome:
            if not marks:
                marks["first"] = (cpu_seconds(), time.monotonic(), len(messages))
            self.seen += len(messages)
            rows = [{"table": "payments_1m", "window_start": window_start, "province_code": f"{n % 34:02d}",
                     "tx_count": n, "success_count": n, "amount_vnd": n * 1000, "version": n}
                    for n in range(len(messages) // 80)]
            dead = [(m.key, DeadLetter(topic=m.topic, partition=m.partition, offset=m.offset, key="k",
                                       reason="malformed_json", error="not JSON", raw="{x"))
                    for m in messages[:len(messages) // 500]]
            if self.seen >= count:
                marks["last"] = (cpu_seconds(), time.monotonic(), self.seen)
            return Outcome(rows, dead, len(messages), 0)

    config = StreamConfig(app_id=group, broker=f"kafka://{bootstrap}", input_topics=TOPICS, deadletter_topic=DEAD,
                          windows_topic=WINDOWS, batch_max_events=20_000, batch_within_s=0.5, retry_max_s=5.0,
                          datadir=f"/tmp/fetch-side-{group}")
    app = create_app(config, NoStore())  # type: ignore[arg-type]

    @app.task
    async def report_when_done() -> None:
        while "last" not in marks:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the last batch's rows go out
        cpu0, wall0, first = marks["first"]
        cpu1, wall1, seen = marks["last"]
        scale = 100_000 / (seen - first)
        print(f"RESULT messages {seen - first} cpu_s_per_100k {(cpu1 - cpu0) * scale:.3f} "
              f"wall_s_per_100k {(wall1 - wall0) * scale:.3f} full_collections {gc.get_stats()[2]['collections']}",
              flush=True)
        os._exit(0)

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], int(sys.argv[3]))
    else:
        run(sys.argv[2], int(sys.argv[3]), sys.argv[4])
