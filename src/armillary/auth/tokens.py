"""Bearer tokens: minting, recognising, and the admin token made at first start.

A token reads `arm_<id>_<secret>`: the `arm_` prefix makes a leaked token easy to
spot (and to scan for), the id names it in lists and logs without revealing it, and
only SHA-256(token) is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from armillary import timestamps
from armillary.errors import Unauthorized
from armillary.store import tokens as token_store
from armillary.store.database import Tx

PREFIX = "arm_"
MAX_TOKEN_LENGTH = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """The caller a request acts for."""

    token_id: str
    role: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Minted:
    token_id: str
    token: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def mint() -> Minted:
    """A fresh random token (the plain value exists only in the return value)."""
    token_id = secrets.token_hex(6)
    return Minted(token_id=token_id, token=f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}")


async def bootstrap_admin(conn: Tx, *, now: dt.datetime) -> Minted | None:
    """At first start (no token exists yet), create the admin token and return it once."""
    if await token_store.count(conn) > 0:
        return None
    minted = mint()
    await token_store.add(
        conn,
        token_id=minted.token_id,
        secret_hash=digest(minted.token),
        role="admin",
        description="bootstrap admin token",
        now=now,
    )
    return minted


async def authenticate(conn: Tx, token: str, *, now: dt.datetime) -> Principal:
    """The principal behind `token`, or `Unauthorized` saying why not."""
    if len(token) > MAX_TOKEN_LENGTH or not token.startswith(PREFIX):
        raise Unauthorized("expected an Armillary token ('arm_…') in 'Authorization: Bearer'")
    record = await token_store.find_by_hash(conn, digest(token))
    if record is None:
        raise Unauthorized("unknown token")
    if record.revoked_at is not None:
        raise Unauthorized("token has been revoked")
    if record.expires_at is not None and timestamps.utc(record.expires_at) <= now:
        raise Unauthorized("token has expired")
    return Principal(token_id=record.id, role=record.role)
