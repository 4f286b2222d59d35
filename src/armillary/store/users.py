"""Users, their dashboard sessions, and tenant token revocations in the store.

Users carry an argon2id password hash (never the password), a role, and the count
of failed logins behind the lockout. A session row is keyed by the SHA-256 of the
cookie's value, so the store cannot hand out a live cookie; it carries the CSRF
token mutations must echo. A tenant's token revocation is one moment: tokens
issued before it are refused.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.errors import Conflict, NotFound
from armillary.store import feed
from armillary.store.tables import sessions, tenant_token_revocations, users


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    name: str
    password_hash: str
    role: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None
    failed_logins: int
    locked_until: dt.datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    user: str
    csrf_token: str
    expires_at: dt.datetime


async def get(conn: AsyncConnection, name: str) -> User | None:
    row = (await conn.execute(select(users).where(users.c.name == name))).first()
    if row is None:
        return None
    return User(
        name=row.name,
        password_hash=row.password_hash,
        role=row.role,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
        failed_logins=row.failed_logins,
        locked_until=row.locked_until,
    )


async def list_all(conn: AsyncConnection) -> list[User]:
    rows = await conn.execute(select(users.c.name).order_by(users.c.name))
    found = [await get(conn, r.name) for r in rows]
    return [u for u in found if u is not None]


async def add(
    conn: AsyncConnection, *, name: str, password_hash: str, role: str, now: dt.datetime
) -> None:
    if await get(conn, name) is not None:
        raise Conflict(f"user {name!r} already exists")
    await conn.execute(
        insert(users).values(
            name=name,
            password_hash=password_hash,
            role=role,
            created_at=now,
            failed_logins=0,
        )
    )


async def update_user(conn: AsyncConnection, name: str, **values: object) -> None:
    result = await conn.execute(update(users).where(users.c.name == name).values(**values))
    if result.rowcount == 0:
        raise NotFound(f"user {name!r} not found")
    if _ENDS_SESSIONS & set(values):
        _credential_changed(conn, f"user:{name}")


async def remove(conn: AsyncConnection, name: str) -> None:
    await conn.execute(delete(sessions).where(sessions.c.user == name))
    result = await conn.execute(delete(users).where(users.c.name == name))
    if result.rowcount == 0:
        raise NotFound(f"user {name!r} not found")
    _credential_changed(conn, f"user:{name}")


async def add_session(
    conn: AsyncConnection,
    *,
    id_hash: str,
    user: str,
    csrf_token: str,
    now: dt.datetime,
    expires_at: dt.datetime,
) -> None:
    await conn.execute(
        insert(sessions).values(
            id_hash=id_hash, user=user, csrf_token=csrf_token, created_at=now, expires_at=expires_at
        )
    )


async def find_session(conn: AsyncConnection, id_hash: str) -> Session | None:
    row = (await conn.execute(select(sessions).where(sessions.c.id_hash == id_hash))).first()
    if row is None:
        return None
    return Session(user=row.user, csrf_token=row.csrf_token, expires_at=row.expires_at)


async def take_session(conn: AsyncConnection, id_hash: str, *, prefix: str) -> Session | None:
    """Remove the session whose CSRF column starts with `prefix` and return it, in one
    statement (`DELETE … RETURNING`): of two transactions taking the same row, at any
    isolation level, exactly one gets it."""
    taken = delete(sessions).where(
        sessions.c.id_hash == id_hash, sessions.c.csrf_token.startswith(prefix, autoescape=True)
    )
    columns = (sessions.c.user, sessions.c.csrf_token, sessions.c.expires_at)
    rows = (await conn.execute(taken.returning(*columns))).all()
    if len(rows) != 1:
        return None
    _credential_changed(conn, "session")
    row = rows[0]
    return Session(user=row.user, csrf_token=row.csrf_token, expires_at=row.expires_at)


async def remove_session(conn: AsyncConnection, id_hash: str) -> None:
    await conn.execute(delete(sessions).where(sessions.c.id_hash == id_hash))
    _credential_changed(conn, "session")


async def remove_expired_sessions(conn: AsyncConnection, *, now: dt.datetime) -> None:
    await conn.execute(delete(sessions).where(sessions.c.expires_at <= now))


async def revoke_tenant_tokens(conn: AsyncConnection, tenant: str, *, now: dt.datetime) -> None:
    """Refuse every token of `tenant` issued up to `now`."""
    found = await tenant_tokens_revoked_before(conn, tenant)
    if found is None:
        await conn.execute(
            insert(tenant_token_revocations).values(tenant=tenant, revoked_before=now)
        )
    else:
        await conn.execute(
            update(tenant_token_revocations)
            .where(tenant_token_revocations.c.tenant == tenant)
            .values(revoked_before=now)
        )
    _credential_changed(conn, f"tenant:{tenant}")


_ENDS_SESSIONS = frozenset({"disabled_at", "role", "password_hash"})
"""Columns of a user whose change may end (or change the role of) their sessions."""


def _credential_changed(conn: AsyncConnection, name: str) -> None:
    feed.record(conn.info, feed.Change(kind=feed.CREDENTIAL, name=name))


async def tenant_tokens_revoked_before(conn: AsyncConnection, tenant: str) -> dt.datetime | None:
    row = (
        await conn.execute(
            select(tenant_token_revocations.c.revoked_before).where(
                tenant_token_revocations.c.tenant == tenant
            )
        )
    ).first()
    return row.revoked_before if row is not None else None
