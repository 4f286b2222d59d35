"""One real server per test module and backend: SQLite and Postgres run the same tests.
Modules that need a node daemon ask for `node`: one per module, on that server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from armillary.store.database import Database
from tests.support import postgres
from tests.support.api import apply
from tests.support.cli import Cli
from tests.support.documents import ACME
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `only_backend("postgres")` exists for that backend alone: its
    other backend's case is deselected, as it would test nothing there. Not a skip:
    under CI=true nothing may skip, and a skip should mean something is missing."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("only_backend")
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        if marker is not None and backend is not None and backend not in marker.args:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    base = request.getfixturevalue("postgres_server")
    yield from postgres.fresh_database(base)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A store of the test's own (no server): a new SQLite file or Postgres database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    yield from postgres.fresh_database(request.getfixturevalue("postgres_server"))


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
    database_url: str | None,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[ServerProcess]:
    """The module's server, with the module's `SERVER_ENV` settings if it has them."""
    settings: dict[str, str] = getattr(request.module, "SERVER_ENV", {})
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("home"), database_url=database_url, extra_env=settings
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def node(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[NodeProcess]:
    """A node daemon connected to the module's `server` (which a module may override),
    run from examples/quickstart, with the Org `acme` most test stacks belong to. It
    stops every replica when it stops. Its tenants share its user unless the module
    sets `NODE_TENANT_UIDS` (see `NodeProcess.tenant_uids`)."""
    daemon = NodeProcess(
        server=server,
        data_dir=tmp_path_factory.mktemp("node"),
        tenant_uids=getattr(request.module, "NODE_TENANT_UIDS", "off"),
    )
    daemon.start()
    try:
        apply(server, ACME)
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def cli(server: ServerProcess, tmp_path: Path) -> Cli:
    return Cli(server, tmp_path)
