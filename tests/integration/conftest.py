"""One real server per test module and backend: SQLite and Postgres run the same tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from armillary.store.database import Database
from tests.conftest import fresh_postgres_database
from tests.integration.serverproc import ServerProcess


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    base = request.getfixturevalue("postgres_server")
    yield from fresh_postgres_database(base)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A store of the test's own (no server): a new SQLite file or Postgres database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    yield from fresh_postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Database]:
    """`store_url`, opened and migrated."""
    db = await Database.open(store_url)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture(scope="module")
def server(
    database_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = ServerProcess(home=tmp_path_factory.mktemp("home"), database_url=database_url)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


class Cli:
    """The real `armillary` Typer app, in-process, talking HTTP to the server process."""

    def __init__(self, server: ServerProcess, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> tuple[int, str, str]:
        from armillary.main import app

        env = {"ARMILLARY_URL": self.server.url, "ARMILLARY_TOKEN": self.server.token}
        result = self.runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli(server: ServerProcess, tmp_path: Path) -> Cli:
    return Cli(server, tmp_path)
