"""API keys: minting, recognising, revoking, and the admin key made at first start.

A key reads `arm_<id>_<secret>`: the `arm_` prefix makes a leaked key easy to spot
(and to scan for), the id names it in lists, logs and the audit log without
revealing it, and only SHA-256(key) is stored — keys are 256-bit random values, so
a fast hash is the right tool. Each key has a role (`viewer`, `developer`,
`admin`, or `node` for node daemons), may expire, and may be revoked; the plain
key exists only in the answer that created it. A provisioning run issues a tenant
its own key (role `tenant`, scoped like a tenant token, long-lived, revoked when
the tenant is deprovisioned or its tokens are revoked).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from armillary import timestamps
from armillary.auth.access import ROLES, Principal
from armillary.errors import Invalid, Unauthorized
from armillary.store import tokens as token_store
from armillary.store import users
from armillary.store.database import Tx

PREFIX = "arm_"
MAX_TOKEN_LENGTH = 256
KEY_ROLES = ("viewer", "developer", "admin", "node")


@dataclass(frozen=True, slots=True, kw_only=True)
class Minted:
    token_id: str
    token: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def mint() -> Minted:
    """A fresh random key (the plain value exists only in the return value)."""
    token_id = secrets.token_hex(6)
    return Minted(token_id=token_id, token=f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}")


async def create(
    conn: Tx,
    *,
    role: str,
    description: str,
    now: dt.datetime,
    expires_at: dt.datetime | None = None,
) -> Minted:
    """A new API key with `role`; returned once, stored hashed."""
    if role not in KEY_ROLES:
        raise Invalid(f"role: expected one of {', '.join(KEY_ROLES)}, got {role!r}")
    if expires_at is not None and expires_at <= now:
        raise Invalid("expires_at: expected a moment in the future")
    minted = mint()
    await token_store.add(
        conn,
        token_id=minted.token_id,
        secret_hash=digest(minted.token),
        role=role,
        description=description,
        now=now,
        expires_at=expires_at,
    )
    return minted


async def create_for_tenant(conn: Tx, *, tenant: str, description: str, now: dt.datetime) -> Minted:
    """A key that acts as `tenant` (role `tenant`): what a provisioning run issues."""
    minted = mint()
    await token_store.add(
        conn,
        token_id=minted.token_id,
        secret_hash=digest(minted.token),
        role="tenant",
        description=description,
        now=now,
        tenant=tenant,
    )
    return minted


async def revoke_for_tenant(
    conn: Tx, tenant: str, *, now: dt.datetime, description: str | None = None
) -> list[str]:
    """Revoke the tenant's keys (only those with `description`, when given)."""
    revoked = []
    for record in await token_store.for_tenant(conn, tenant):
        if record.revoked_at is None and description in (None, record.description):
            await token_store.revoke(conn, record.id, now=now)
            revoked.append(record.id)
    return revoked


async def bootstrap_admin(conn: Tx, *, now: dt.datetime) -> Minted | None:
    """At first start (no key exists yet), create the admin key and return it once."""
    if await token_store.count(conn) > 0:
        return None
    return await create(conn, role="admin", description="bootstrap admin token", now=now)


async def authenticate(conn: Tx, token: str, *, now: dt.datetime) -> Principal:
    """The principal behind an API key, or `Unauthorized` saying why not."""
    if len(token) > MAX_TOKEN_LENGTH or not token.startswith(PREFIX):
        raise Unauthorized("expected an Armillary token ('arm_…') in 'Authorization: Bearer'")
    record = await token_store.find_by_hash(conn, digest(token))
    if record is None:
        raise Unauthorized("unknown token")
    if record.revoked_at is not None:
        raise Unauthorized("token has been revoked")
    if record.expires_at is not None and timestamps.utc(record.expires_at) <= now:
        raise Unauthorized("token has expired")
    role = next((r for r in ROLES if r == record.role), None)
    if role is None:
        raise Unauthorized(f"token has an unknown role {record.role!r}")
    if role == "tenant":
        if record.tenant is None:
            raise Unauthorized("tenant key without a tenant")
        cut = await users.tenant_tokens_revoked_before(conn, record.tenant)
        if cut is not None and timestamps.utc(record.created_at) <= timestamps.utc(cut):
            raise Unauthorized("this tenant's tokens have been revoked")
    return Principal(kind="token", id=record.id, role=role, tenant=record.tenant)
