"""Rollout revisions in the store: every change of a tenant's component, in order.

The tenant controller records a revision when a component's template changes (with
the template itself, so a rollback can run it again), and finishes it `complete`,
`failed` or `superseded`. Across tenants, `for_release` answers "who is rolling out,
or failed, this release right now", which gates a release's wave; `lock_release`
makes that read and the next revision's insert one decision on Postgres (SQLite
serialises writers already). Only the newest `HISTORY_LIMIT` revisions of a tenant's
component are kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, delete, insert, select, text, update
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


async def history(
    conn: AsyncConnection, tenant: str, component: str | None = None
) -> list[Revision]:
    """A tenant's revisions (of one component, or all), oldest first per component."""
    query = select(rollouts).where(rollouts.c.tenant == tenant)
    if component is not None:
        query = query.where(rollouts.c.component == component)
    rows = await conn.execute(query.order_by(rollouts.c.component, rollouts.c.revision))
    return [_revision(r) for r in rows]


async def for_release(
    conn: AsyncConnection, component: str, release: str, *, states: tuple[str, ...]
) -> list[Revision]:
    """Every tenant's revisions of `component` running `release`, in `states`."""
    rows = await conn.execute(
        select(rollouts)
        .where(rollouts.c.component == component)
        .where(rollouts.c.release == release)
        .where(rollouts.c.state.in_(states))
        .order_by(rollouts.c.started_at)
    )
    return [_revision(r) for r in rows]


async def lock_release(conn: AsyncConnection, component: str, release: str) -> None:
    """Serialise gate decisions about one release until this transaction ends."""
    if conn.dialect.name != "postgresql":
        return  # SQLite: one writer at a time already
    digest = hashlib.sha256(f"rollout:{component}:{release}".encode()).digest()[:8]
    key = int.from_bytes(digest, "big", signed=True)
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def add(conn: AsyncConnection, revision: Revision) -> None:
    """Insert `revision`; drop the oldest beyond `HISTORY_LIMIT` for its component."""
    await conn.execute(
        insert(rollouts).values(
            tenant=revision.tenant,
            component=revision.component,
            revision=revision.revision,
            template_hash=revision.template_hash,
            template=revision.template,
            release=revision.release,
            state=revision.state,
            reason=revision.reason,
            started_at=revision.started_at,
            finished_at=revision.finished_at,
        )
    )
    await conn.execute(
        delete(rollouts)
        .where(rollouts.c.tenant == revision.tenant)
        .where(rollouts.c.component == revision.component)
        .where(rollouts.c.revision <= revision.revision - HISTORY_LIMIT)
    )


async def finish(
    conn: AsyncConnection,
    revision: Revision,
    *,
    state: str,
    reason: str | None,
    now: dt.datetime,
) -> None:
    """Move a progressing revision to its outcome (a no-op if it already moved).

    Announced on the feed: tenants holding a change of the same release look again."""
    feed.record(
        conn.info,
        feed.Change(kind="Rollout", name=revision.release or "", tenant=revision.tenant),
    )
    await conn.execute(
        update(rollouts)
        .where(rollouts.c.tenant == revision.tenant)
        .where(rollouts.c.component == revision.component)
        .where(rollouts.c.revision == revision.revision)
        .where(rollouts.c.state == "progressing")
        .values(state=state, reason=reason, finished_at=now)
    )


async def remove_tenant(conn: AsyncConnection, tenant: str) -> None:
    """Forget a deleted tenant's history."""
    await conn.execute(delete(rollouts).where(rollouts.c.tenant == tenant))
