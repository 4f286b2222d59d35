"""Session fixtures: the Postgres server; Hypothesis's profile; how the suite is
shared between xdist workers (tests/support/scheduling.py). Helpers live in
tests/support/."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support import postgres, scheduling

# No wall-clock assertion in the tests, Hypothesis's included: its default 200 ms per
# example fails at random on a shared 2-core machine, and under coverage's tracer pure
# code runs about twice as slow. Examples still run to completion, checked as before.
settings.register_profile("armillary", deadline=None)
settings.load_profile("armillary")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The base URL of the Postgres server. Skips without one, except under CI=true,
    where the Postgres tests must run."""
    try:
        asyncio.run(postgres.admin("SELECT 1"))
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Postgres is unreachable at {postgres.POSTGRES_URL}: {exc}")
        pytest.skip(f"Postgres unreachable at {postgres.POSTGRES_URL}: {exc}")
    return postgres.POSTGRES_URL


@pytest.fixture(scope="session", autouse=True)
def user_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The CLI's contexts file (`armillary.cli.userconfig`) is the suite's own: a test
    never reads the developer's current context nor writes theirs."""
    patch = pytest.MonkeyPatch()
    patch.setenv("ARMILLARY_CONFIG", str(tmp_path_factory.getbasetemp() / "config.json"))
    yield
    patch.undo()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    scheduling.long_running_first(items)


@pytest.hookimpl(optionalhook=True)  # `-p no:xdist` runs the suite in one process
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadscope` (as `make test` runs): a unit of work is a module on one
    store backend; see tests/support/scheduling.py."""
    if config.getoption("dist") == "loadscope":
        return scheduling.ModuleAndBackendScheduling(config, log)
    return None
