"""Resources in the store: get, list, apply, delete, and status writes.

Invariants kept here, whoever calls:
- `generation` moves only when the spec changes; `resource_version` on every write.
- A write that names the version it read (`expected_version`) is conditional:
  `UPDATE … WHERE resource_version = :seen`; if it moved, `Conflict`.
- Spec and status are separate write paths: `apply` never touches status and
  `write_status` never touches spec, labels or generation. A status write is announced
  on the feed's status topic only (`Change.status`), so it never wakes spec watchers.
Rows never leave this module: callers get `Stored` values.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary import timestamps
from armillary.errors import Conflict, NotFound
from armillary.resources import kinds
from armillary.resources.canonical import Canonical
from armillary.resources.meta import API_VERSION
from armillary.store import feed
from armillary.store.tables import resources

Outcome = Literal["created", "configured", "unchanged"]
_RETRIES = 5  # unconditional writes re-read and retry this often before giving up


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """One resource as the store holds it."""

    kind: str
    name: str
    uid: str
    generation: int
    resource_version: int
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    status: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime

    def canonical(self) -> Canonical:
        """What the resource holds, comparable with a document's canonical form."""
        return Canonical(
            kind=self.kind,
            name=self.name,
            spec=self.spec,
            labels=self.labels,
            annotations=self.annotations,
        )

    def owner(self) -> str | None:
        """The tenant this resource belongs to, as reads decide who may see it: a Tenant
        itself, a Schedule its `spec.tenant`; None for what is fleet-wide (stacks, orgs,
        releases, …)."""
        if self.kind == "Tenant":
            return self.name
        if self.kind == "Schedule":
            owner = self.spec.get("tenant")
            return str(owner) if owner else None
        return None

    def document(self) -> dict[str, Any]:
        """The resource as the API shows it: a Secret's values are `<redacted>`."""
        metadata: dict[str, Any] = {"name": self.name}
        if self.labels:
            metadata["labels"] = self.labels
        if self.annotations:
            metadata["annotations"] = self.annotations
        metadata.update(
            uid=self.uid,
            generation=self.generation,
            resourceVersion=str(self.resource_version),
            createdAt=timestamps.iso(self.created_at),
        )
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": metadata,
            "spec": _shown(self.kind, self.spec),
            "status": self.status,
        }


def _shown(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    known = kinds.BY_NAME.get(kind)
    return known.shown(spec) if known is not None else spec


def _stored(row: Row[Any]) -> Stored:
    return Stored(
        kind=row.kind,
        name=row.name,
        uid=row.uid,
        generation=row.generation,
        resource_version=row.resource_version,
        labels=row.labels,
        annotations=row.annotations,
        spec=row.spec,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _ref(kind: str, name: str) -> str:
    return f"{kind} {name!r}"


async def get(conn: AsyncConnection, kind: str, name: str) -> Stored | None:
    """The resource, or None."""
    result = await conn.execute(
        select(resources).where(resources.c.kind == kind, resources.c.name == name)
    )
    row = result.first()
    return _stored(row) if row is not None else None


async def get_many(conn: AsyncConnection, kind: str, names: Collection[str]) -> dict[str, Stored]:
    """The resources of `kind` named in `names` that exist, by name: one query."""
    if not names:
        return {}
    result = await conn.execute(
        select(resources).where(resources.c.kind == kind, resources.c.name.in_(sorted(names)))
    )
    return {row.name: _stored(row) for row in result}


async def require(conn: AsyncConnection, kind: str, name: str) -> Stored:
    """The resource, or `NotFound`."""
    found = await get(conn, kind, name)
    if found is None:
        raise NotFound(f"{_ref(kind, name)} not found")
    return found


async def names(conn: AsyncConnection, kind: str) -> set[str]:
    """The names of every resource of `kind` (nothing else read: no JSON decoded)."""
    result = await conn.execute(select(resources.c.name).where(resources.c.kind == kind))
    return {row.name for row in result}


async def list_kind(
    conn: AsyncConnection,
    kind: str,
    *,
    labels: dict[str, str] | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[Stored]:
    """Every resource of `kind` whose labels include `labels`, in name order; only
    those named after `after`, and at most `limit` rows read, when given."""
    query = select(resources).where(resources.c.kind == kind).order_by(resources.c.name)
    if after is not None:
        query = query.where(resources.c.name > after)
    if limit is not None:
        query = query.limit(limit)
    result = await conn.execute(query)
    found = [_stored(row) for row in result]
    if labels:
        found = [s for s in found if all(s.labels.get(k) == v for k, v in labels.items())]
    return found


async def apply(
    conn: AsyncConnection, item: Canonical, *, expected_version: int | None, now: dt.datetime
) -> tuple[Outcome, Stored]:
    """Create the resource if absent, update it if it differs, else leave it alone.

    Without `expected_version` the write is unconditional: if another writer (a status
    write, say) moves the version between our read and our write, we read again and
    retry, as server-side apply does. With it, a moved version is the caller's Conflict.
    """
    for _ in range(_RETRIES):
        current = await get(conn, item.kind, item.name)
        check_version(current, item.kind, item.name, expected=expected_version)
        if current is None:
            return "created", await _insert(conn, item, now=now)
        if item == current.canonical():
            return "unchanged", current
        values = {
            "spec": item.spec,
            "labels": item.labels,
            "annotations": item.annotations,
            "generation": current.generation + (1 if item.spec != current.spec else 0),
        }
        try:
            return "configured", await _update(conn, current, values, now=now)
        except Conflict:
            if expected_version is not None:
                raise
    raise _moved(item.kind, item.name)


async def write_status(
    conn: AsyncConnection,
    *,
    kind: str,
    name: str,
    status: dict[str, Any],
    expected_version: int | None,
    now: dt.datetime,
) -> Stored:
    """Replace the status. Spec, labels and generation stay as they are. Without
    `expected_version`, a version moved by a concurrent spec write is re-read and retried."""
    for _ in range(_RETRIES):
        current = await require(conn, kind, name)
        check_version(current, kind, name, expected=expected_version)
        if status == current.status:
            return current
        try:
            return await _update(conn, current, {"status": status}, now=now, status_only=True)
        except Conflict:
            if expected_version is not None:
                raise
    raise _moved(kind, name)


async def remove(
    conn: AsyncConnection, kind: str, name: str, *, expected_version: int | None = None
) -> Stored:
    """Delete the resource and return what it was. `NotFound` if absent.

    Without `expected_version`, a version moved by a concurrent write (a controller's
    status, on Postgres between our read and our delete) is re-read and retried, as
    `apply` does; with it, a moved version is the caller's Conflict."""
    for _ in range(_RETRIES):
        current = await require(conn, kind, name)
        check_version(current, kind, name, expected=expected_version)
        result = await conn.execute(
            delete(resources).where(
                resources.c.kind == kind,
                resources.c.name == name,
                resources.c.resource_version == current.resource_version,
            )
        )
        if result.rowcount == 1:
            feed.record(conn.info, feed.Change(kind=kind, name=name))
            return current
        if expected_version is not None:
            break
    raise _moved(kind, name)


async def _insert(conn: AsyncConnection, item: Canonical, *, now: dt.datetime) -> Stored:
    kind, name = item.kind, item.name
    values = {
        "kind": kind,
        "name": name,
        "uid": str(uuid.uuid4()),
        "generation": 1,
        "resource_version": 1,
        "labels": item.labels,
        "annotations": item.annotations,
        "spec": item.spec,
        "status": {},
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(insert(resources).values(**values))
    except IntegrityError:
        raise Conflict(f"{_ref(kind, name)} was created by another writer; apply again") from None
    feed.record(conn.info, feed.Change(kind=kind, name=name))
    return await require(conn, kind, name)


async def _update(
    conn: AsyncConnection,
    current: Stored,
    values: dict[str, Any],
    *,
    now: dt.datetime,
    status_only: bool = False,
) -> Stored:
    result = await conn.execute(
        update(resources)
        .where(
            resources.c.kind == current.kind,
            resources.c.name == current.name,
            resources.c.resource_version == current.resource_version,
        )
        .values(**values, resource_version=current.resource_version + 1, updated_at=now)
    )
    if result.rowcount != 1:
        raise _moved(current.kind, current.name)
    feed.record(conn.info, feed.Change(kind=current.kind, name=current.name, status=status_only))
    return await require(conn, current.kind, current.name)


def check_version(current: Stored | None, kind: str, name: str, *, expected: int | None) -> None:
    """`Conflict` unless a write based on resourceVersion `expected` may go ahead."""
    if expected is None:
        return
    if current is None:
        raise Conflict(
            f"{_ref(kind, name)} does not exist, but the document names "
            f"resourceVersion {expected}; remove it to create the resource"
        )
    if expected != current.resource_version:
        raise Conflict(
            f"{_ref(kind, name)} has changed since it was read: the document names "
            f"resourceVersion {expected}, the store holds {current.resource_version}; "
            "re-read it and apply again"
        )


def _moved(kind: str, name: str) -> Conflict:
    return Conflict(f"{_ref(kind, name)} was changed by another writer; re-read and retry")
