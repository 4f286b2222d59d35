"""Named locks held across many transactions: one provisioning run per tenant at a time.

`hold(db, name, owner=…)` waits until it has the lock and keeps it until the block
ends. On Postgres it is a session advisory lock held on one dedicated connection
(the server dies → the connection closes → the lock is free). On SQLite it is a
lease row in `locks`, renewed while held; a holder that dies stops renewing and its
lease expires. Waiters poll and hold no connection while they wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
from collections.abc import AsyncIterator

from sqlalchemy import delete, select, text, update

from armillary.store.database import Database
from armillary.store.tables import locks

POLL_S = 0.05
LEASE_S = 30.0


def _key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name`."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextlib.asynccontextmanager
async def hold(
    db: Database, name: str, *, owner: str, lease_s: float = LEASE_S
) -> AsyncIterator[None]:
    """Wait for the lock `name`, hold it for the block, release it after."""
    if db.dialect == "postgresql":
        async with _advisory(db, name):
            yield
    else:
        async with _lease(db, name, owner=owner, lease_s=lease_s):
            yield


@contextlib.asynccontextmanager
async def _advisory(db: Database, name: str) -> AsyncIterator[None]:
    key = _key(name)
    while True:
        conn = await db.connection()
        try:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
            await conn.commit()
            if got:
                try:
                    yield
                finally:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    await conn.commit()
                return
        finally:
            await conn.close()
        await asyncio.sleep(POLL_S)


@contextlib.asynccontextmanager
async def _lease(db: Database, name: str, *, owner: str, lease_s: float) -> AsyncIterator[None]:
    while not await _try_lease(db, name, owner=owner, lease_s=lease_s):  # noqa: ASYNC110 - another process may hold it
        await asyncio.sleep(POLL_S)
    renewal = asyncio.create_task(_renew(db, name, owner=owner, lease_s=lease_s))
    try:
        yield
    finally:
        renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewal
        async with db.write() as conn:
            await conn.execute(delete(locks).where(locks.c.name == name, locks.c.owner == owner))


async def _try_lease(db: Database, name: str, *, owner: str, lease_s: float) -> bool:
    now = _now()
    async with db.write() as conn:  # BEGIN IMMEDIATE on SQLite: one writer decides at a time
        row = (await conn.execute(select(locks).where(locks.c.name == name))).first()
        expires = now + dt.timedelta(seconds=lease_s)
        if row is None:
            await conn.execute(locks.insert().values(name=name, owner=owner, expires_at=expires))
            return True
        held_until = (
            row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
        )
        if row.owner == owner or held_until <= now:
            await conn.execute(
                update(locks).where(locks.c.name == name).values(owner=owner, expires_at=expires)
            )
            return True
        return False


async def _renew(db: Database, name: str, *, owner: str, lease_s: float) -> None:
    while True:
        await asyncio.sleep(lease_s / 3)
        async with db.write() as conn:
            await conn.execute(
                update(locks)
                .where(locks.c.name == name, locks.c.owner == owner)
                .values(expires_at=_now() + dt.timedelta(seconds=lease_s))
            )
