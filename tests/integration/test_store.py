"""The store's contract, on real SQLite and real Postgres: generation moves only on
spec change, resourceVersion on every write, status is its own write path, stale
versions conflict, and only hashes of tokens are kept."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from armillary.errors import Conflict, NotFound
from armillary.resources.canonical import Canonical
from armillary.store import repository
from armillary.store.database import Database
from armillary.store.tables import api_tokens
from tests.support.servers import ServerProcess

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def db(database_url: str | None, tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(database_url or f"sqlite:///{tmp_path / 's.db'}")
    try:
        yield database
    finally:
        await database.close()


async def _apply(
    db: Database,
    name: str,
    spec: dict[str, Any],
    *,
    labels: dict[str, str] | None = None,
    expected_version: int | None = None,
) -> tuple[str, repository.Stored]:
    async with db.write() as conn:
        item = Canonical(kind="Org", name=name, spec=spec, labels=labels or {}, annotations={})
        return await repository.apply(conn, item, expected_version=expected_version, now=NOW)


async def test_generation_and_resource_version(db: Database) -> None:
    name = f"o-{uuid.uuid4().hex[:8]}"
    outcome, s = await _apply(db, name, {"description": "a"})
    assert (outcome, s.generation, s.resource_version) == ("created", 1, 1)
    outcome, s = await _apply(db, name, {"description": "a"})
    assert (outcome, s.generation, s.resource_version) == ("unchanged", 1, 1)
    outcome, s = await _apply(db, name, {"description": "b"})
    assert (outcome, s.generation, s.resource_version) == ("configured", 2, 2)
    outcome, s = await _apply(db, name, {"description": "b"}, labels={"a": "b"})
    assert (outcome, s.generation, s.resource_version) == ("configured", 2, 3)


async def test_status_is_a_separate_write_path(db: Database) -> None:
    name = f"o-{uuid.uuid4().hex[:8]}"
    await _apply(db, name, {"description": "a"})
    async with db.write() as conn:
        s = await repository.write_status(
            conn,
            kind="Org",
            name=name,
            status={"observedGeneration": 1},
            expected_version=1,
            now=NOW,
        )
    assert (s.generation, s.resource_version, s.status) == (1, 2, {"observedGeneration": 1})
    assert s.spec == {"description": "a"}
    # A spec apply keeps the status; a status write with a stale version conflicts.
    _, s = await _apply(db, name, {"description": "b"})
    assert s.status == {"observedGeneration": 1}
    async with db.write() as conn:
        with pytest.raises(Conflict):
            await repository.write_status(
                conn, kind="Org", name=name, status={}, expected_version=2, now=NOW
            )


async def test_stale_versions_conflict_and_change_nothing(db: Database) -> None:
    name = f"o-{uuid.uuid4().hex[:8]}"
    await _apply(db, name, {"description": "a"})
    await _apply(db, name, {"description": "b"})
    with pytest.raises(Conflict, match="resourceVersion 1"):
        await _apply(db, name, {"description": "c"}, expected_version=1)
    with pytest.raises(Conflict):
        await _apply(db, f"new-{name}", {}, expected_version=3)
    async with db.write() as conn:
        with pytest.raises(Conflict):
            await repository.remove(conn, "Org", name, expected_version=1)
    async with db.read() as conn:
        s = await repository.require(conn, "Org", name)
        assert s.spec == {"description": "b"}
        assert await repository.get(conn, "Org", f"new-{name}") is None
        with pytest.raises(NotFound):
            await repository.require(conn, "Org", "absent")


async def test_a_failed_transaction_leaves_nothing(db: Database) -> None:
    name = f"o-{uuid.uuid4().hex[:8]}"
    with pytest.raises(Conflict):
        async with db.write() as conn:
            item = Canonical(kind="Org", name=name, spec={}, labels={}, annotations={})
            await repository.apply(conn, item, expected_version=None, now=NOW)
            raise Conflict("a later document in the same set was stale")
    async with db.read() as conn:
        assert await repository.get(conn, "Org", name) is None


def test_only_the_token_hash_is_stored_and_the_context_file_is_private(
    server: ServerProcess, database_url: str | None
) -> None:
    context = server.home / "context.json"
    assert stat.S_IMODE(context.stat().st_mode) == 0o600
    token = json.loads(context.read_text())["token"]
    assert token.startswith("arm_")

    async def hashes() -> list[str]:
        db = await Database.open(database_url or f"sqlite:///{server.home / 'armillary.db'}")
        try:
            async with db.read() as conn:
                return [r.secret_hash for r in await conn.execute(select(api_tokens))]
        finally:
            await db.close()

    import asyncio

    assert hashlib.sha256(token.encode()).hexdigest() in asyncio.run(hashes())
    if database_url is None:  # the plain token is nowhere in the database files
        for path in server.home.glob("armillary.db*"):
            assert token.encode() not in path.read_bytes()


async def test_a_starting_server_trusts_no_connected_flag(db: Database) -> None:
    """Nodes are connected to a server only after their hello to it."""
    from armillary.store import nodes

    name = f"n-{uuid.uuid4().hex[:8]}"
    async with db.write() as conn:
        await nodes.register(
            conn,
            name=name,
            address="127.0.0.1",
            labels={},
            capacity={"cpu_millicores": 1000, "memory_mb": 512},
            now=NOW,
        )
        await nodes.disconnect_all(conn)
    async with db.read() as conn:
        assert (await nodes.require(conn, name)).connected is False


async def test_a_delete_retries_a_version_moved_under_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A controller's status write between a delete's read and its delete (Postgres,
    read committed) moves the version: the delete reads again and deletes, as apply
    retries; only a delete that names a version is refused."""
    name = f"o-{uuid.uuid4().hex[:8]}"
    await _apply(db, name, {"description": "a"})
    await _apply(db, name, {"description": "b"})
    real = repository.require
    reads = 0

    async def moved_after_the_first_read(conn: Any, kind: str, name: str) -> repository.Stored:
        nonlocal reads
        reads += 1
        found = await real(conn, kind, name)
        if reads == 1:  # as read before another writer moved it
            return dataclasses.replace(found, resource_version=found.resource_version - 1)
        return found

    monkeypatch.setattr(repository, "require", moved_after_the_first_read)
    async with db.write() as conn:
        gone = await repository.remove(conn, "Org", name)
    assert reads == 2 and gone.spec == {"description": "b"}
    async with db.read() as conn:
        assert await repository.get(conn, "Org", name) is None
