"""Rollout revisions in the store: every change of a tenant's component, in order.

The tenant controller records a revision when a component's template changes (with
the template itself, so a rollback can run it again), and finishes it `complete`,
`failed` or `superseded`. One reconcile reads what its decision needs once (`read`:
the tenant's revisions and, for a release the tenant does not run yet, who else is
rolling it out or failed with it, which gates a release's wave) and writes what it
decided once (`save`: revisions finished, started, and the history pruned), in a
number of statements that does not grow with the tenant's components. On Postgres
`read` locks the releases whose wave it reads, so that read and the next revision's
insert are one decision (SQLite serialises writers already). Only the newest
`HISTORY_LIMIT` revisions of a tenant's component are kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.store import feed
from armillary.store.tables import rollouts

HISTORY_LIMIT = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Revision:
    tenant: str
    component: str
    revision: int
    template_hash: str
    template: dict[str, Any]
    release: str | None
    state: str  # progressing | complete | failed | superseded
    reason: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None


def _revision(row: Row[Any]) -> Revision:
    return Revision(
        tenant=row.tenant,
        component=row.component,
        revision=row.revision,
        template_hash=row.template_hash,
        template=row.template,
        release=row.release,
        state=row.state,
        reason=row.reason,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """What one tenant's rollout decision reads (see `read`)."""

    history: tuple[Revision, ...]  # the tenant's revisions, oldest first per component
    others: tuple[Revision, ...]  # other tenants' progressing or failed revisions of the
    # releases the tenant does not run yet


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """A progressing revision's outcome."""

    revision: Revision
    state: str  # complete | failed | superseded
    reason: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Changes:
    """What one decision writes: revisions finished first, then revisions started."""

    finished: tuple[Finished, ...] = ()
    started: tuple[Revision, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.finished or self.started)


async def read(
    conn: AsyncConnection, tenant: str, *, releases: Mapping[str, str], lock: bool = True
) -> Known:
    """The tenant's revisions, and every other tenant's progressing or failed revisions
    of each `component → release` in `releases` that the tenant's newest revision of
    that component does not run (a release it may start: its wave matters). Those
    releases are locked first on Postgres, until the transaction ends (unless `lock`
    is False: a look before deciding whether to write at all)."""
    history = await _select(conn, rollouts.c.tenant == tenant)
    newest = {r.component: r.release for r in history}  # oldest first: the last wins
    starting = sorted((c, r) for c, r in releases.items() if newest.get(c, r) != r)
    if not starting:
        return Known(history=tuple(history), others=())
    if lock:
        await _lock(conn, starting)
    others = await _select(
        conn,
        rollouts.c.tenant != tenant,
        rollouts.c.state.in_(("progressing", "failed")),
        or_(*(and_(rollouts.c.component == c, rollouts.c.release == r) for c, r in starting)),
    )
    return Known(history=tuple(history), others=tuple(others))


async def save(conn: AsyncConnection, changes: Changes, *, now: dt.datetime) -> None:
    """Write one decision: finish revisions (a no-op for one no longer progressing),
    insert new ones, and drop the oldest beyond `HISTORY_LIMIT` of their components.
    A finished revision is announced on the feed: tenants holding a change of the same
    release look again."""
    if changes.finished:
        await conn.execute(
            update(rollouts)
            .where(
                rollouts.c.tenant == bindparam("b_tenant"),
                rollouts.c.component == bindparam("b_component"),
                rollouts.c.revision == bindparam("b_revision"),
                rollouts.c.state == "progressing",
            )
            .values(state=bindparam("b_state"), reason=bindparam("b_reason"), finished_at=now),
            [
                {
                    "b_tenant": f.revision.tenant,
                    "b_component": f.revision.component,
                    "b_revision": f.revision.revision,
                    "b_state": f.state,
                    "b_reason": f.reason,
                }
                for f in changes.finished
            ],
        )
        for f in changes.finished:
            feed.record(
                conn.info,
                feed.Change(
                    kind="Rollout", name=f.revision.release or "", tenant=f.revision.tenant
                ),
            )
    if changes.started:
        await conn.execute(insert(rollouts), [_values(r) for r in changes.started])
        for r in changes.started:  # for the live channel `rollouts`; no controller wakes
            feed.record(
                conn.info,
                feed.Change(kind="Rollout", name=r.release or "", tenant=r.tenant, status=True),
            )
        await conn.execute(
            delete(rollouts).where(
                rollouts.c.tenant == bindparam("b_tenant"),
                rollouts.c.component == bindparam("b_component"),
                rollouts.c.revision <= bindparam("b_oldest"),
            ),
            [
                {
                    "b_tenant": r.tenant,
                    "b_component": r.component,
                    "b_oldest": r.revision - HISTORY_LIMIT,
                }
                for r in changes.started
            ],
        )


async def history(
    conn: AsyncConnection, tenant: str, component: str | None = None
) -> list[Revision]:
    """A tenant's revisions (of one component, or all), oldest first per component."""
    where = [rollouts.c.tenant == tenant]
    if component is not None:
        where.append(rollouts.c.component == component)
    return await _select(conn, *where)


async def remove_tenant(conn: AsyncConnection, tenant: str) -> None:
    """Forget a deleted tenant's history."""
    await conn.execute(delete(rollouts).where(rollouts.c.tenant == tenant))


async def _select(conn: AsyncConnection, *where: Any) -> list[Revision]:
    rows = await conn.execute(
        select(rollouts)
        .where(*where)
        .order_by(rollouts.c.tenant, rollouts.c.component, rollouts.c.revision)
    )
    return [_revision(r) for r in rows]


async def _lock(conn: AsyncConnection, releases: list[tuple[str, str]]) -> None:
    """Serialise wave decisions about `releases` until this transaction ends: one
    statement, the locks taken in one order (so two tenants never wait on each other)."""
    if conn.dialect.name != "postgresql":
        return  # SQLite: one writer at a time already
    keys = sorted({_lock_key(component, release) for component, release in releases})
    await conn.execute(
        text(
            "SELECT pg_advisory_xact_lock(k) "
            "FROM (SELECT unnest(CAST(:keys AS BIGINT[])) AS k ORDER BY 1) AS ordered"
        ),
        {"keys": keys},
    )


def _lock_key(component: str, release: str) -> int:
    digest = hashlib.sha256(f"rollout:{component}:{release}".encode()).digest()[:8]
    return int.from_bytes(digest, "big", signed=True)


def _values(revision: Revision) -> dict[str, Any]:
    return {
        "tenant": revision.tenant,
        "component": revision.component,
        "revision": revision.revision,
        "template_hash": revision.template_hash,
        "template": revision.template,
        "release": revision.release,
        "state": revision.state,
        "reason": revision.reason,
        "started_at": revision.started_at,
        "finished_at": revision.finished_at,
    }
