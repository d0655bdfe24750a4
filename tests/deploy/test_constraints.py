"""deploy/constraints.txt, the lock the container image installs with, against pyproject.toml.

Drift fails here: a dependency added to pyproject.toml without a pin, or a range moved past the pinned
version. Regenerate with `python deploy/lock.py`.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "deploy" / "constraints.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")


def _load_lock_module():
    spec = importlib.util.spec_from_file_location("pulse_deploy_lock", REPO / "deploy" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = _load_lock_module()


def parse_pins(text: str) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"constraints.txt:{number}: not an exact pin NAME==VERSION: {raw!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"constraints.txt:{number}: {name} pinned twice"
        pins[name] = Version(match.group(2))
    return pins


@pytest.fixture(scope="module")
def pins() -> dict[str, Version]:
    return parse_pins(CONSTRAINTS.read_text(encoding="utf-8"))


def unpinned_or_outside(requirements: list[Requirement], pins: dict[str, Version]) -> list[str]:
    problems = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is not pinned")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement} does not allow the pinned {name}=={pins[name]}")
    return problems


def test_every_dependency_of_pyproject_is_pinned_within_its_range(pins: dict[str, Version]) -> None:
    requirements = lock.project_requirements()
    assert len(requirements) >= 10  # the real list was read, not an empty one
    assert unpinned_or_outside(requirements, pins) == []


def test_the_check_catches_drift() -> None:
    """The comparison above fails on a missing pin and on a range that moved past the pin."""
    pins = {"click": Version("8.3.3")}
    assert unpinned_or_outside([Requirement("click>=8.1,<9")], pins) == []
    assert unpinned_or_outside([Requirement("click>=9")], pins) == ["click>=9 does not allow the pinned click==8.3.3"]
    assert unpinned_or_outside([Requirement("rich>=13")], pins) == ["rich>=13 is not pinned"]


def test_the_build_tools_are_pinned_and_satisfy_the_build_system(pins: dict[str, Version]) -> None:
    for name, version in lock.BUILD_TOOLS.items():
        assert pins[name] == Version(version)
    assert unpinned_or_outside(lock.build_requirements(), pins) == []


def test_the_lock_is_a_closure_of_this_environment(pins: dict[str, Version]) -> None:
    """Every distribution the runtime needs (per the metadata installed here) has a pin: a new transitive
    dependency cannot slip into the image unpinned."""
    needed = set(lock.runtime_closure())
    assert {"faust-streaming", "clickhouse-connect", "chdb", "urllib3", "pydantic-core"} <= needed
    assert needed - set(pins) == set()


def test_the_default_install_keeps_grafana_client_and_the_urllib3_fork_out(pins: dict[str, Version]) -> None:
    assert not {"grafana-client", "niquests", "urllib3-future"} & set(pins)
    assert "urllib3" in pins


def test_the_dockerfile_installs_with_the_lock() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs and all("-c deploy/constraints.txt" in line for line in installs), installs
    assert "--no-build-isolation" in dockerfile  # the pinned setuptools/wheel build the package
    dockerignore = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert "!deploy/constraints.txt" in dockerignore, "the lock must be in the build context"
