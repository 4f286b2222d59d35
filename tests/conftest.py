"""Session fixtures: the Postgres server. Helpers live in tests/support/."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.support import postgres


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
