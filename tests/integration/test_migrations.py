"""Guard: the Alembic migrations produce exactly the schema the tables declare, on
SQLite and on Postgres, and migrating twice is harmless."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from armillary.store.database import Database
from armillary.store.tables import metadata


def _diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


@pytest.fixture
def url(backend: str, database_url: str | None, tmp_path: Path) -> str:
    return database_url or f"sqlite:///{tmp_path / 'm.db'}"


async def test_migrations_match_the_tables(url: str) -> None:
    db = await Database.open(url)
    try:
        await db.migrate()  # a second run finds nothing to do
        async with db.read() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await db.close()
