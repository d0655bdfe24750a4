"""Real services for tests: the Kafka broker (once per session) and `pulse worker` processes."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from pulse.kafka_tools import committed_offsets, end_offsets, wait_for_group
from pulse.settings import ALL_TOPICS, STREAM_TOPICS

STOP_TIMEOUT_S = 60


@dataclass
class PulseEnv:
    """Environment for one test's pulse processes: its own consumer group and ClickHouse store."""

    state_dir: Path
    bootstrap: str
    group: str = field(default_factory=lambda: f"pulse-test-{uuid.uuid4().hex[:8]}")
    extra: dict[str, str] = field(default_factory=dict)
    security: dict[str, Any] = field(default_factory=dict)  # kafka-python options for a secured broker

    @property
    def chdb_url(self) -> str:
        return f"chdb://{self.state_dir / 'clickhouse'}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PULSE_STATE_DIR": str(self.state_dir),
            "PULSE_KAFKA_BOOTSTRAP": self.bootstrap,
            "PULSE_CONSUMER_GROUP": self.group,
            "PULSE_PII_KEY": "test-key",
            "PULSE_METRICS_PORT": "0",
            "PULSE_BATCH_WITHIN_S": "0.3",
            **self.extra,
        }

    def pulse(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "pulse.cli", *args], env=self.env(), capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"pulse {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def start_from_now(self) -> None:
        """Commit the group at the current log ends, so this test's worker sees only this test's events."""
        offsets = end_offsets(self.bootstrap, ALL_TOPICS, self.security)
        self.start_offsets = {tp: o for tp, o in offsets.items() if tp.topic in STREAM_TOPICS.values()}
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, **self.security)
        try:
            admin.alter_group_offsets(self.group, {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()
                                                   if tp.topic in STREAM_TOPICS.values()})
        finally:
            admin.close()

    def stored_count(self) -> int:
        """Messages of this test the group has committed (committed only after they are stored)."""
        committed = committed_offsets(self.bootstrap, self.group, self.security)
        return sum(max(0, committed.get(tp, start) - start) for tp, start in self.start_offsets.items())

    def wait_until_stored(self, timeout_s: float = 180) -> float:
        return wait_for_group(self.bootstrap, self.group,
                              end_offsets(self.bootstrap, STREAM_TOPICS.values(), self.security), timeout_s,
                              security=self.security)


class WorkerProcess:
    started: list[WorkerProcess] = []  # every worker a test started, so teardown can stop leftovers

    def __init__(self, env: PulseEnv, log_name: str = "worker") -> None:
        WorkerProcess.started.append(self)
        env.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = env.state_dir / f"{log_name}-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "pulse.cli", "worker", "--loglevel", "info"],
                                        env=env.env(), stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
            raise AssertionError(f"worker ignored SIGTERM for {STOP_TIMEOUT_S} s; log: {self.log_path}") from None
        finally:
            self._log.close()
        return code

    def faust_process(self):  # psutil.Process
        """The supervised Faust worker (the child of `pulse worker`)."""
        import psutil

        wait_for(lambda: bool(psutil.Process(self.process.pid).children()), 60, "the worker child process")
        return psutil.Process(self.process.pid).children()[0]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_tcp_port() -> int:
    """A port nothing listens on right now (the kernel's pick; a race with other processes is unlikely)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def topic_messages(bootstrap: str, topic: str, since: dict[TopicPartition, int]) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        partitions = [tp for tp in since if tp.topic == topic]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, since[tp])
        return list(consumer)
    finally:
        consumer.close()
