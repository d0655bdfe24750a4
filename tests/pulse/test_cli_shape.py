"""The command line's one error wrapper and the project's one error root."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import click
import pytest
from click.testing import CliRunner

import pulse
import schemas
import simulators
import sinks
import streams
from pulse.cli.base import PulseGroup
from pulse.errors import PulseError, PulseUsageError


def _group_raising(error: BaseException) -> click.Group:
    @click.group(cls=PulseGroup)
    def root() -> None:
        """A group like `pulse`."""

    @root.command()
    def fail() -> None:
        """Raise the error under test."""
        raise error

    return root


@pytest.mark.parametrize(("error", "code"), [
    (PulseError("the broker said no"), 1),
    (PulseUsageError("--since: 'x' is not an ISO 8601 time"), 2),
    (TimeoutError("consumer group 'g' did not catch up\nand a long story from the library"), 1),
])
def test_an_expected_failure_is_one_line(error: BaseException, code: int) -> None:
    result = CliRunner().invoke(_group_raising(error), ["fail"])
    assert result.exit_code == code
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == \
        [f"Error: {str(error).splitlines()[0]}"]
    assert "Traceback" not in result.output


def test_a_bug_keeps_its_traceback() -> None:
    result = CliRunner().invoke(_group_raising(KeyError("bug")), ["fail"])
    assert isinstance(result.exception, KeyError)  # not turned into a message


def _project_exceptions() -> list[type[BaseException]]:
    found = {}
    for package in (schemas, streams, sinks, simulators, pulse):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if info.name.endswith("__main__") or info.name.startswith("pulse.report.pictures"):
                continue
            module = importlib.import_module(info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__ == info.name:
                    found[value.__qualname__] = value
    return sorted(found.values(), key=lambda cls: cls.__qualname__)


def test_every_project_error_derives_from_the_root_and_keeps_its_stdlib_base() -> None:
    errors = _project_exceptions()
    assert len(errors) >= 16
    assert [cls.__name__ for cls in errors if not issubclass(cls, PulseError)] == []
    from pulse.infra import InfraError
    from pulse.kafka_security import KafkaSecurityError
    from sinks.client import StoreBusy
    assert issubclass(StoreBusy, TimeoutError) and issubclass(KafkaSecurityError, ValueError)
    assert issubclass(InfraError, RuntimeError)
