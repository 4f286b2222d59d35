"""API tokens in the store: only the SHA-256 of each secret is kept.

Tokens are 256-bit random values, so a fast hash is the right tool (a password hash
would only slow every request down without adding strength); argon2 is for the
low-entropy passwords that come with users.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.errors import NotFound
from armillary.store import feed
from armillary.store.tables import api_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    id: str
    role: str
    description: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    tenant: str | None = None
    tenant_uid: str | None = None  # the uid of `tenant` when the key was issued
    node: str | None = None  # the node name a node key is bound to (None: not yet)


async def count(conn: AsyncConnection) -> int:
    result = await conn.execute(select(func.count()).select_from(api_tokens))
    return int(result.scalar_one())


async def add(
    conn: AsyncConnection,
    *,
    token_id: str,
    secret_hash: str,
    role: str,
    description: str,
    now: dt.datetime,
    expires_at: dt.datetime | None = None,
    tenant: str | None = None,
    tenant_uid: str | None = None,
    node: str | None = None,
) -> None:
    await conn.execute(
        insert(api_tokens).values(
            id=token_id,
            secret_hash=secret_hash,
            role=role,
            description=description,
            created_at=now,
            expires_at=expires_at,
            tenant=tenant,
            tenant_uid=tenant_uid,
            node=node,
        )
    )


async def find_by_hash(conn: AsyncConnection, secret_hash: str) -> TokenRecord | None:
    result = await conn.execute(select(api_tokens).where(api_tokens.c.secret_hash == secret_hash))
    row = result.first()
    return _record(row) if row is not None else None


def _record(row: Any) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        role=row.role,
        description=row.description,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        tenant=row.tenant,
        tenant_uid=row.tenant_uid,
        node=row.node,
    )


async def for_tenant(conn: AsyncConnection, tenant: str) -> list[TokenRecord]:
    """The keys scoped to `tenant`, revoked ones included."""
    rows = await conn.execute(
        select(api_tokens).where(api_tokens.c.tenant == tenant).order_by(api_tokens.c.created_at)
    )
    return [_record(r) for r in rows]


async def list_all(conn: AsyncConnection) -> list[TokenRecord]:
    rows = await conn.execute(select(api_tokens).order_by(api_tokens.c.created_at))
    return [_record(r) for r in rows]


async def revoke(conn: AsyncConnection, token_id: str, *, now: dt.datetime) -> TokenRecord:
    """Mark the key revoked (kept, so lists and the audit log can still name it)."""
    row = (await conn.execute(select(api_tokens).where(api_tokens.c.id == token_id))).first()
    if row is None:
        raise NotFound(f"API key {token_id!r} not found")
    if row.revoked_at is None:
        await conn.execute(
            update(api_tokens).where(api_tokens.c.id == token_id).values(revoked_at=now)
        )
        feed.record(conn.info, feed.Change(kind=feed.CREDENTIAL, name=f"token:{token_id}"))
    return await get(conn, token_id)


async def bind_node(conn: AsyncConnection, token_id: str, node: str) -> bool:
    """Bind an unbound node key to `node`; False when it was bound meanwhile (the
    caller re-reads: two first hellos race, one name wins)."""
    result = await conn.execute(
        update(api_tokens)
        .where(api_tokens.c.id == token_id, api_tokens.c.node.is_(None))
        .values(node=node)
    )
    return result.rowcount == 1


async def get(conn: AsyncConnection, token_id: str) -> TokenRecord:
    row = (await conn.execute(select(api_tokens).where(api_tokens.c.id == token_id))).one()
    return _record(row)
