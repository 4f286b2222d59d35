"""The Postgres server tests use, and a fresh database per test module."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

POSTGRES_URL = os.environ.get(
    "ARMILLARY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


async def admin(sql: str) -> None:
    """Run one statement on the server's maintenance connection."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_database(base_url: str) -> Iterator[str]:
    """Create an empty database for one test module; drop it afterwards."""
    name = f"armillary_test_{secrets.token_hex(4)}"
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield base_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
