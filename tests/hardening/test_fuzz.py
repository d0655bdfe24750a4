"""A bounded atheris (libFuzzer) run over decode_values, the VietQR codec and the dead-letter masking (issue 8).

The harness is deploy/fuzz/fuzz_decode.py; longer runs: see its docstring. Here it runs ~20 s from its seed
corpus with a fixed libFuzzer seed, and any crash, hang or memory blow-up fails the test with the input.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "deploy" / "fuzz" / "fuzz_decode.py"
DICTIONARY = ROOT / "deploy" / "fuzz" / "decode.dict"
FUZZ_SECONDS = 20


def fuzz(tmp_path: Path, seconds: int, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    corpus = tmp_path / "corpus"
    seeded = subprocess.run([sys.executable, str(HARNESS), "--seeds", str(corpus)], capture_output=True, text=True,
                            timeout=60)
    assert seeded.returncode == 0, seeded.stderr
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    result = subprocess.run(
        [sys.executable, str(HARNESS), str(corpus), f"-max_total_time={seconds}", "-seed=1", "-timeout=10",
         "-rss_limit_mb=3072", "-max_len=8192", f"-dict={DICTIONARY}", f"-artifact_prefix={artifacts}/",
         "-print_final_stats=1"],
        capture_output=True, text=True, timeout=seconds + 90, cwd=ROOT, env={**os.environ, **(env or {})})
    return result, artifacts


def test_bounded_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    result, artifacts = fuzz(tmp_path, FUZZ_SECONDS)
    output = result.stdout + result.stderr
    crashes = sorted(artifacts.iterdir())
    detail = f"{output[-4000:]}\nartifacts: {[(p.name, p.read_bytes()[:300]) for p in crashes]}"
    assert result.returncode == 0 and not crashes, detail
    assert "Done" in output, detail
    runs = int(output.split("stat::number_of_executed_units:")[1].split()[0])
    assert runs > 1_000, f"only {runs} inputs in {FUZZ_SECONDS} s: the run did not really fuzz\n{detail}"


def test_a_crash_in_the_target_fails_the_run(tmp_path: Path) -> None:
    """The harness's planted crash (PULSE_FUZZ_SELFTEST) must be reported: a failing run is visible."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "planted").write_bytes(b"\xff crash here")
    result, artifacts = fuzz(tmp_path, 5, {"PULSE_FUZZ_SELFTEST": "1"})
    assert result.returncode != 0
    assert "planted crash" in result.stdout + result.stderr
    assert [path.name for path in artifacts.iterdir() if path.name.startswith("crash-")]
