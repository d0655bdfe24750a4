"""Many workers (issue 15): three workers in one consumer group over twelve partitions per topic, one
embedded store handed between them; one worker killed outright (supervisor and Faust process, SIGKILL)
and started again midway. The windows equal the truth."""
from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from pulse.kafka_tools import end_offsets
from pulse.settings import STREAM_TOPICS, Settings
from tests.scale_out.conftest import PARTITIONS, stored_count
from tests.scale_out.offset_trace import around, unflushed
from tests.support.services import PulseEnv, WorkerProcess, wait_for
from tests.test_end_to_end import simulate
from tests.test_fault_tolerance import check_truth

EVENTS = 6000


def group_members(env: PulseEnv) -> int:
    """Members of the test's consumer group (-1 while the group's coordinator cannot be asked)."""
    admin = KafkaAdminClient(bootstrap_servers=env.bootstrap)
    try:
        return len(admin.describe_groups([env.group])[env.group]["members"])
    except KafkaError:
        return -1
    finally:
        admin.close()


def test_three_workers_over_twelve_partitions_one_killed_and_restarted(
        kafka_cluster_settings: Settings, tmp_path: Path) -> None:
    env = PulseEnv(state_dir=tmp_path / "state", bootstrap=kafka_cluster_settings.kafka_bootstrap)
    env.start_from_now()
    partitions = end_offsets(env.bootstrap, STREAM_TOPICS.values())
    assert len(partitions) == PARTITIONS * len(STREAM_TOPICS)
    events = tmp_path / "events.jsonl"
    simulate(env, events, EVENTS, seed=37)
    env.extra["PULSE_BATCH_MAX_EVENTS"] = "300"  # many flushes: the store changes hands often
    trace = tmp_path / "offset-trace"  # every worker's deliveries, flushes, seeks and commits
    env.extra["PULSE_OFFSET_TRACE_DIR"] = str(trace)
    workers = [WorkerProcess(env, f"worker-{i}") for i in range(1, 4)]
    with ThreadPoolExecutor(1) as pool:
        replay = pool.submit(env.pulse, "replay", "--from-file", str(events), "--speed", "3", timeout=240)
        try:
            wait_for(lambda: group_members(env) == 3, 120, "three workers sharing the partitions")
            wait_for(lambda: stored_count(env) > 1000, 150, "the group to store some events")
            victim = workers.pop(1)
            faust = victim.faust_process()
            victim.process.send_signal(signal.SIGKILL)  # the supervisor first, so nothing restarts the child
            faust.send_signal(signal.SIGKILL)
            victim.process.wait(timeout=10)
            faust.wait(timeout=10)
            assert stored_count(env) < EVENTS, "the kill came too late to test anything"
            workers.append(WorkerProcess(env, "worker-2-again"))
            replay.result()
            env.wait_until_stored(timeout_s=240)
            assert all(worker.alive() for worker in workers)
        finally:
            for worker in workers:
                assert worker.stop() == 0, worker.log()[-3000:]
    # Every offset of the run was handed to the sink by some worker (the victim's trace lines are written up
    # to the kill); a hole here is a loss in the consumer, windows off without one a loss in storage.
    holes = unflushed(trace, env.start_offsets, end_offsets(env.bootstrap, STREAM_TOPICS.values()))
    assert not holes, f"offsets no worker flushed: {holes}\n{around(trace, holes)}"
    check_truth(env, events)
