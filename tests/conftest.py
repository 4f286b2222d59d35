"""Shared fixtures: the Postgres test database, and free ports."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Iterator

import pytest

POSTGRES_URL = os.environ.get(
    "ARMILLARY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The base URL of the Postgres server. Skips without one, except under CI=true,
    where the Postgres tests must run."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Postgres is unreachable at {POSTGRES_URL}: {exc}")
        pytest.skip(f"Postgres unreachable at {POSTGRES_URL}: {exc}")
    return POSTGRES_URL


def fresh_postgres_database(base_url: str) -> Iterator[str]:
    """Create an empty database for one test module; drop it afterwards."""
    name = f"armillary_test_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield base_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
