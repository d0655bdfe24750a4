"""simulators.stats.describe: statistics of a JSONL file, checked on files with known content."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulators.output import write_jsonl
from simulators.stats import describe, lifecycle_ok
from tests.simulators.conftest import FOUR_WEEKS_SPEED, generate


def test_lifecycle_paths() -> None:
    assert lifecycle_ok(["submitted"])
    assert lifecycle_ok(["submitted", "accepted", "appraised", "approved", "signed", "returned"])
    assert lifecycle_ok(["submitted", "accepted", "supplement_requested", "appraised", "approved", "signed",
                         "returned", "rated"])
    assert lifecycle_ok(["submitted", "accepted", "withdrawn"])
    assert not lifecycle_ok(["submitted", "accepted", "appraised", "rated"])
    assert not lifecycle_ok(["submitted", "supplement_requested"])
    assert lifecycle_ok(["submitted", "accepted", "rejected"])
    assert lifecycle_ok(["submitted", "accepted", "appraised", "rejected"])
    assert not lifecycle_ok(["submitted", "rejected"])
    assert not lifecycle_ok(["submitted", "appraised"])
    assert not lifecycle_ok(["accepted"])
    assert not lifecycle_ok(["submitted", "accepted", "appraised", "approved", "rejected"])


def test_describe_counts_faults_and_reports_the_calibration(tmp_path: Path) -> None:
    faults = "duplicate=0.02,malformed=0.01,unknown_province=0.01"
    run = generate("default", 30_000, speed=FOUR_WEEKS_SPEED, faults=faults, parse=False)
    path = tmp_path / "events.jsonl"
    write_jsonl(iter(run.emitted), path)
    stats = describe(path, scenario="default")
    injected = run.generator.faults.summary()["injected"]
    assert stats["lines"] == len(run.emitted)
    assert stats["malformed"] == injected["malformed"]
    assert stats["duplicates"] == injected["duplicate"]
    assert stats["unknown_province"] == injected["unknown_province"]
    clean = [json.loads(e.value) for e in run.emitted if e.value.endswith(b"}")]
    payments = [e for e in clean if e["type"] == "payment" and e["province_code"] != "99" and e["category"] == "market"]
    pay = stats["payments"]
    assert pay["count"] == len({e["event_id"] for e in payments})
    assert pay["qr_valid_share"] == 1.0 and pay["qr_agrees_share"] == 1.0
    assert pay["failure_rate"] == pytest.approx(0.02, abs=0.005)
    assert pay["morning_peak_hour"] in (6, 7) and pay["afternoon_peak_hour"] in (16, 17)
    assert pay["province_share_max_abs_error"] < 0.01
    assert sum(pay["hourly_share"]) == pytest.approx(1.0, abs=1e-3)
    dossiers = stats["dossiers"]
    # A malformed or unknown-province dossier event leaves a hole in its lifecycle.
    assert 0 < dossiers["invalid_lifecycles"] <= injected["malformed"] + injected["unknown_province"]
    assert dossiers["due_not_after_submission"] == 0
    assert dossiers["online_share"] == pytest.approx(0.82, abs=0.03)
    assert dossiers["returned"] > 1000
    assert stats["identity"]["level2_share"] == pytest.approx(0.65, abs=0.05)
    assert set(stats["identity"]["step_share"]) == {"registered", "approved", "activated"}
    # 87 % of payment starts on average; this run starts in the first week of a month, when bills peak.
    assert stats["payments"]["category_share"]["market"] == pytest.approx(0.87, abs=0.06)
    assert stats["expected"]["dossiers_online_share"] == 0.82
    assert stats["event_time"]["span_hours"] > 24 * 7
    json.dumps(stats)  # serializable for the CLI


def test_describe_sees_a_broken_lifecycle_and_a_bad_qr(tmp_path: Path) -> None:
    run = generate("default", 2000, speed=FOUR_WEEKS_SPEED)
    events = run.events
    dossier = next(e for e in events if e["type"] == "dossier" and e["stage"] == "accepted")
    payment = next(e for e in events if e["type"] == "payment" and e["category"] == "market")
    broken = dict(dossier, event_id="00000000-0000-4000-8000-000000000001", stage="returned")
    bad = dict(payment, event_id="00000000-0000-4000-8000-000000000002", payee_bank_bin="970436"
               if payment["payee_bank_bin"] != "970436" else "970422")
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(json.dumps(e).encode() for e in [*events, broken, bad]) + b"\n")
    stats = describe(path)
    assert stats["dossiers"]["invalid_lifecycles"] == 1
    assert stats["payments"]["qr_agrees_share"] < 1.0
    assert "expected" not in stats
