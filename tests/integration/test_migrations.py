"""Guard: the Alembic migrations produce exactly the schema the tables declare, on
SQLite and on Postgres, and migrating twice is harmless."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

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


async def test_tenant_keys_issued_before_uid_binding_are_bound_to_their_tenant_of_now(
    store_url: str,
) -> None:
    db = await Database.open(store_url, migrate=False)
    try:
        await db.migrate(to="0010")
        async with db.write() as conn:
            await conn.execute(
                text(
                    "INSERT INTO resources (kind, name, uid, generation, resource_version, "
                    "labels, annotations, spec, status, created_at, updated_at) VALUES "
                    "('Tenant', 'kept', 'uid-of-kept', 1, 1, '{}', '{}', '{}', '{}', "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            for key, tenant in (("k1", "kept"), ("k2", "gone"), ("k3", None)):
                await conn.execute(
                    text(
                        "INSERT INTO api_tokens (id, secret_hash, role, description, "
                        "created_at, tenant) VALUES (:id, :hash, :role, '', CURRENT_TIMESTAMP, "
                        ":tenant)"
                    ),
                    {
                        "id": key,
                        "hash": key * 8,
                        "role": "tenant" if tenant else "node",
                        "tenant": tenant,
                    },
                )
        await db.migrate()
        async with db.read() as conn:
            rows = (
                await conn.execute(text("SELECT id, tenant_uid, node FROM api_tokens ORDER BY id"))
            ).all()
        assert [tuple(r) for r in rows] == [
            ("k1", "uid-of-kept", None),
            ("k2", None, None),  # its tenant is gone: it stays unbound, and refused
            ("k3", None, None),  # a node key binds at its first hello
        ]
    finally:
        await db.close()
