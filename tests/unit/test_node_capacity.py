"""What a node offers the scheduler: the capacity it declares (`--cpu-millicores`,
`--memory-mb`, or their environment variables), else its machine's."""

from __future__ import annotations

import psutil
import pytest

from armillary import launcher
from armillary.node import daemon


def test_a_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(launcher.MEMORY_ENV, "2048")
    assert launcher.offered(512, flag="--memory-mb", env=launcher.MEMORY_ENV) == 512
    assert launcher.offered(None, flag="--memory-mb", env=launcher.MEMORY_ENV) == 2048
    monkeypatch.delenv(launcher.MEMORY_ENV)
    assert launcher.offered(None, flag="--memory-mb", env=launcher.MEMORY_ENV) is None


@pytest.mark.parametrize(
    ("flag_value", "env_value", "message"),
    [
        (0, None, "--cpu-millicores: expected a positive integer, got 0"),
        (-500, None, "--cpu-millicores: expected a positive integer, got -500"),
        (
            None,
            "2 cores",
            "ARMILLARY_NODE_CPU_MILLICORES: expected a positive integer, got '2 cores'",
        ),
        (None, "0", "ARMILLARY_NODE_CPU_MILLICORES: expected a positive integer, got 0"),
    ],
)
def test_a_value_that_is_not_a_positive_integer_is_refused_naming_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch, flag_value: int | None, env_value: str | None, message: str
) -> None:
    if env_value is not None:
        monkeypatch.setenv(launcher.CPU_ENV, env_value)
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(") + "$"):
        launcher.offered(flag_value, flag="--cpu-millicores", env=launcher.CPU_ENV)


def test_the_declared_capacity_replaces_the_machines_each_on_its_own() -> None:
    machine = daemon.capacity()
    assert machine.cpu_millicores == (psutil.cpu_count() or 1) * 1000
    assert machine.memory_mb == psutil.virtual_memory().total // (1024 * 1024)
    declared = daemon.capacity(cpu_millicores=1500, memory_mb=300)
    assert (declared.cpu_millicores, declared.memory_mb) == (1500, 300)
    assert daemon.capacity(memory_mb=300).cpu_millicores == machine.cpu_millicores
