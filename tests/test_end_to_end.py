"""The heart of the suite: simulated events through real Kafka and the real worker into chDB must give
exactly the window tables computed independently from the same file."""
from __future__ import annotations

from pathlib import Path

from tests.support.services import PulseEnv, WorkerProcess
from tests.support.tables import assert_windows_equal, dead_letter_reasons, stored_windows
from tests.support.truth import expected_windows

ALL_FAULTS = "duplicate=0.02,late=0.03,out_of_order=0.02,too_late=0.01,malformed=0.01,unknown_province=0.01,bad_qr=0.01"


def simulate(env: PulseEnv, out: Path, events: int, seed: int, faults: str = ALL_FAULTS) -> None:
    env.pulse("simulate", "--seed", str(seed), "--events", str(events), "--rate", "2000", "--speed", "30",
              "--faults", faults, "--out", str(out))


def test_replayed_file_gives_exact_windows(pulse_env: PulseEnv, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    simulate(pulse_env, events, 4000, seed=11)
    truth = expected_windows(events)
    assert truth.dead_letters["malformed_json"] and truth.dead_letters["bad_qr"], "faults must be present"

    worker = WorkerProcess(pulse_env)
    try:
        pulse_env.pulse("replay", "--from-file", str(events), "--wait", "--timeout", "180")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    assert_windows_equal(truth, stored_windows(pulse_env.chdb_url))
    assert dead_letter_reasons(pulse_env.chdb_url) == truth.dead_letters
