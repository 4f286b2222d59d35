"""Secret values and the key check, as the store holds them: ciphertext only.

A Secret is two rows. Its `resources` row is written by `repository.apply` like any
resource, with a spec whose `data` maps each key to a keyed digest of its value (so
applying the same values again is `unchanged`); its `secret_values` row, keyed by the
resource's uid and deleted with it, holds the Fernet token of the values. `key_checks`
holds, per purpose, a token of a constant that tells a server at start whether its key
is the one the data was written with. Encryption and digests are `auth.secrets`' job;
this module only moves the opaque strings. Rows never leave it: callers get `Sealed`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.errors import Conflict
from armillary.store import feed
from armillary.store.tables import key_checks, resources, secret_values

KIND = "Secret"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sealed:
    """One Secret: its resource's identity and spec, and the token of its values."""

    name: str
    uid: str
    generation: int
    resource_version: int
    spec: dict[str, Any]  # `data` holds digests, never values
    ciphertext: str | None = field(repr=False)  # None only if the values row is missing

    @property
    def tenant(self) -> str | None:
        owner = self.spec.get("tenant")
        return str(owner) if owner else None

    @property
    def version(self) -> str:
        """Moves whenever the values may have changed (a new spec, or a new Secret)."""
        return f"{self.uid}/{self.generation}"


def _query() -> Any:
    return (
        select(
            resources.c.name,
            resources.c.uid,
            resources.c.generation,
            resources.c.resource_version,
            resources.c.spec,
            secret_values.c.ciphertext,
        )
        .select_from(resources.outerjoin(secret_values, secret_values.c.uid == resources.c.uid))
        .where(resources.c.kind == KIND)
    )


def _sealed(row: Any) -> Sealed:
    return Sealed(
        name=row.name,
        uid=row.uid,
        generation=row.generation,
        resource_version=row.resource_version,
        spec=row.spec,
        ciphertext=row.ciphertext,
    )


async def get(conn: AsyncConnection, name: str) -> Sealed | None:
    row = (await conn.execute(_query().where(resources.c.name == name))).first()
    return _sealed(row) if row is not None else None


async def list_all(conn: AsyncConnection, names: Iterable[str] | None = None) -> list[Sealed]:
    """Every Secret (or those of `names` that exist), in name order."""
    query = _query().order_by(resources.c.name)
    if names is not None:
        query = query.where(resources.c.name.in_(sorted(set(names))))
    return [_sealed(row) for row in await conn.execute(query)]


async def usable(conn: AsyncConnection, *, tenant: str, names: Iterable[str]) -> dict[str, str]:
    """The version of each Secret of `names` that `tenant` may use: those that exist and
    belong to it or to no tenant."""
    wanted = list(names)
    if not wanted:
        return {}
    found = await list_all(conn, wanted)
    return {s.name: s.version for s in found if s.tenant in (None, tenant)}


async def put(conn: AsyncConnection, *, uid: str, ciphertext: str, now: dt.datetime) -> None:
    """Store the token of the values of the Secret with resource uid `uid`."""
    result = await conn.execute(
        update(secret_values)
        .where(secret_values.c.uid == uid)
        .values(ciphertext=ciphertext, updated_at=now)
    )
    if result.rowcount == 0:
        await conn.execute(
            insert(secret_values).values(uid=uid, ciphertext=ciphertext, updated_at=now)
        )


async def rekey(
    conn: AsyncConnection,
    sealed: Sealed,
    *,
    data: dict[str, str],
    ciphertext: str,
    now: dt.datetime,
) -> None:
    """Replace a Secret's digests and token with ones made with a new key.

    The values are the same, so `generation` stays (replicas that use the Secret are
    not replaced); `resource_version` moves, as on every write."""
    result = await conn.execute(
        update(resources)
        .where(
            resources.c.kind == KIND,
            resources.c.name == sealed.name,
            resources.c.resource_version == sealed.resource_version,
        )
        .values(
            spec={**sealed.spec, "data": data},
            resource_version=sealed.resource_version + 1,
            updated_at=now,
        )
    )
    if result.rowcount != 1:
        raise Conflict(f"Secret {sealed.name!r} was changed by another writer; re-read and retry")
    await put(conn, uid=sealed.uid, ciphertext=ciphertext, now=now)
    feed.record(conn.info, feed.Change(kind=KIND, name=sealed.name))


async def check(conn: AsyncConnection, purpose: str) -> str | None:
    """The key check token of `purpose`, or None before the first Secret is written."""
    row = (await conn.execute(select(key_checks).where(key_checks.c.purpose == purpose))).first()
    return None if row is None else str(row.token)


async def put_check(conn: AsyncConnection, purpose: str, token: str, *, now: dt.datetime) -> None:
    result = await conn.execute(
        update(key_checks)
        .where(key_checks.c.purpose == purpose)
        .values(token=token, updated_at=now)
    )
    if result.rowcount == 0:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(key_checks).values(purpose=purpose, token=token, updated_at=now)
                )
        except IntegrityError:  # two first Secrets at once, on two servers
            raise Conflict("the key check was written by another server; apply again") from None
