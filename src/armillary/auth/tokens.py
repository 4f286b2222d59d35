"""API keys: minting, recognising, revoking, and the admin key made at first start.

A key reads `arm_<id>_<secret>`: the `arm_` prefix makes a leaked key easy to spot
(and to scan for), the id names it in lists, logs and the audit log without
revealing it, and only SHA-256(key) is stored — keys are 256-bit random values, so
a fast hash is the right tool. Each key has a role (`viewer`, `developer`,
`admin`, or `node` for node daemons), may expire, and may be revoked; the plain
key exists only in the answer that created it. A provisioning run issues a tenant
its own key (role `tenant`, scoped like a tenant token, long-lived, revoked when
the tenant is deprovisioned or its tokens are revoked).

A key is bound to what it was issued for, the way tenant tokens are:

- a tenant key carries its tenant's uid, and is refused once no tenant of that name
  has that uid (deleted, or deleted and created again: another tenant);
- a node key names the one node it may register (`node`); a node key minted without
  a name is bound to the first name it registers with (`bind_node`), so a key taken
  from one machine cannot pull another node's assignments, secrets included.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from armillary import timestamps
from armillary.auth.access import ROLES, Principal
from armillary.errors import Invalid, PermanentError, Unauthorized
from armillary.store import repository, users
from armillary.store import tokens as token_store
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
    node: str | None = None,
) -> Minted:
    """A new API key with `role`; returned once, stored hashed. `node`: the one node
    name a `node` key may register (None: the first name it registers with)."""
    if role not in KEY_ROLES:
        raise Invalid(f"role: expected one of {', '.join(KEY_ROLES)}, got {role!r}")
    if node is not None and role != "node":
        raise Invalid(f"node: only a node key is bound to a node, not a {role} key")
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
        node=node,
    )
    return minted


async def create_for_tenant(
    conn: Tx, *, tenant: str, tenant_uid: str, description: str, now: dt.datetime
) -> Minted:
    """A key that acts as `tenant` (role `tenant`): what a provisioning run issues.
    It works only while the tenant with `tenant_uid` exists."""
    minted = mint()
    await token_store.add(
        conn,
        token_id=minted.token_id,
        secret_hash=digest(minted.token),
        role="tenant",
        description=description,
        now=now,
        tenant=tenant,
        tenant_uid=tenant_uid,
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
    principal, _record = await _authenticate(conn, token, now=now)
    return principal


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLogin:
    principal: Principal
    bound_now: bool  # an unbound node key was bound to this node by this hello


async def authenticate_node(conn: Tx, token: str, *, node: str, now: dt.datetime) -> NodeLogin:
    """Who a node daemon that says hello as `node` is: a node key bound to that name
    (an unbound one is bound to it now) or an admin key (any name). `Unauthorized`
    for a key that is no key or may not run a node; `PermanentError` for a node key
    bound to another name (retrying cannot change that)."""
    principal, record = await _authenticate(conn, token, now=now)
    if principal.role == "admin":
        return NodeLogin(principal=principal, bound_now=False)
    if principal.role != "node":
        raise Unauthorized("a node needs a node key or an admin token")
    bound = record.node
    if bound is None and await token_store.bind_node(conn, record.id, node):
        return NodeLogin(principal=principal, bound_now=True)
    if bound is None:  # bound by a hello that came first
        bound = (await token_store.get(conn, record.id)).node
    if bound != node:
        raise PermanentError(
            f"node key {record.id} is bound to node {bound!r}; it cannot register as {node!r}"
        )
    return NodeLogin(principal=principal, bound_now=False)


async def _authenticate(
    conn: Tx, token: str, *, now: dt.datetime
) -> tuple[Principal, token_store.TokenRecord]:
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
        tenant = await repository.get(conn, "Tenant", record.tenant)
        if tenant is None or record.tenant_uid is None or tenant.uid != record.tenant_uid:
            raise Unauthorized("the tenant this key was issued for no longer exists")
        cut = await users.tenant_tokens_revoked_before(conn, record.tenant)
        if cut is not None and timestamps.utc(record.created_at) <= timestamps.utc(cut):
            raise Unauthorized("this tenant's tokens have been revoked")
    principal = Principal(kind="token", id=record.id, role=role, tenant=record.tenant)
    return principal, record
