"""Provisioning runs and their steps in the store.

A run is created with its whole list of steps (all `pending`), so its timeline is
visible from the first moment. `create` with an idempotency key returns the run
already holding that key instead of a new one — also under a race, where the
unique constraint decides and the loser reads the winner's run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.errors import NotFound
from armillary.store import feed
from armillary.store.database import Database
from armillary.store.tables import provision_runs, provision_steps


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    position: int
    name: str
    state: str  # pending | running | succeeded | failed | rolled-back | skipped
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    id: str
    action: str
    org: str
    tenant: str
    idempotency_key: str | None
    request: dict[str, Any]
    state: str  # pending | running | succeeded | failed | rolled-back
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    steps: tuple[Step, ...] = ()


def _run(row: Row[Any], steps: tuple[Step, ...]) -> Run:
    return Run(
        id=row.id,
        action=row.action,
        org=row.org,
        tenant=row.tenant,
        idempotency_key=row.idempotency_key,
        request=row.request,
        state=row.state,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        steps=steps,
    )


def _step(row: Row[Any]) -> Step:
    return Step(
        position=row.position,
        name=row.name,
        state=row.state,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        detail=row.detail,
    )


async def create(
    db: Database,
    *,
    run_id: str,
    action: str,
    org: str,
    tenant: str,
    idempotency_key: str | None,
    request: dict[str, Any],
    steps: list[str],
    now: dt.datetime,
) -> tuple[Run, bool]:
    """The new run and True, or the run already holding `idempotency_key` and False."""
    if idempotency_key is not None:
        existing = await by_key(db, idempotency_key)
        if existing is not None:
            return existing, False
    try:
        async with db.write() as conn:
            await conn.execute(
                insert(provision_runs).values(
                    id=run_id,
                    action=action,
                    org=org,
                    tenant=tenant,
                    idempotency_key=idempotency_key,
                    request=request,
                    state="pending",
                    created_at=now,
                )
            )
            await conn.execute(
                insert(provision_steps),
                [
                    {
                        "run_id": run_id,
                        "position": i,
                        "name": name,
                        "state": "pending",
                        "detail": {},
                    }
                    for i, name in enumerate(steps)
                ],
            )
            _progressed(conn, run_id, tenant)
    except IntegrityError:
        if idempotency_key is None:
            raise
        existing = await by_key(db, idempotency_key)
        if existing is None:
            raise
        return existing, False
    return await get(db, run_id), True


async def by_key(db: Database, key: str) -> Run | None:
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(provision_runs).where(provision_runs.c.idempotency_key == key)
            )
        ).first()
        return None if row is None else _run(row, await _steps(conn, row.id))


async def get(db: Database, run_id: str) -> Run:
    async with db.read() as conn:
        row = (
            await conn.execute(select(provision_runs).where(provision_runs.c.id == run_id))
        ).first()
        if row is None:
            raise NotFound(f"provisioning run {run_id!r} not found")
        return _run(row, await _steps(conn, run_id))


async def list_runs(
    db: Database, *, tenant: str | None = None, states: set[str] | None = None
) -> list[Run]:
    query = select(provision_runs).order_by(provision_runs.c.created_at)
    if tenant:
        query = query.where(provision_runs.c.tenant == tenant)
    if states:
        query = query.where(provision_runs.c.state.in_(sorted(states)))
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
        if not rows:
            return []
        # Every run's steps in one query, not one query per run.
        result = await conn.execute(
            select(provision_steps)
            .where(provision_steps.c.run_id.in_([row.id for row in rows]))
            .order_by(provision_steps.c.run_id, provision_steps.c.position)
        )
        steps: dict[str, list[Step]] = {}
        for step_row in result:
            steps.setdefault(step_row.run_id, []).append(_step(step_row))
        return [_run(row, tuple(steps.get(row.id, ()))) for row in rows]


async def _steps(conn: AsyncConnection, run_id: str) -> tuple[Step, ...]:
    result = await conn.execute(
        select(provision_steps)
        .where(provision_steps.c.run_id == run_id)
        .order_by(provision_steps.c.position)
    )
    return tuple(_step(row) for row in result)


async def set_run(db: Database, run_id: str, **values: Any) -> None:
    """Change the run's row. Announced on the feed's status topic (a run's progress is
    a status: no controller watches it), for whoever follows the run."""
    async with db.write() as conn:
        await conn.execute(
            update(provision_runs).where(provision_runs.c.id == run_id).values(**values)
        )
        _progressed(conn, run_id)


def _progressed(conn: AsyncConnection, run_id: str, tenant: str | None = None) -> None:
    """A run created, or its run or a step changed, on the status topic (no controller
    watches it): for whoever follows the run, the live channel `runs` among them."""
    feed.record(
        conn.info, feed.Change(kind="ProvisionRun", name=run_id, tenant=tenant, status=True)
    )


async def set_step(db: Database, run_id: str, position: int, **values: Any) -> None:
    async with db.write() as conn:
        await conn.execute(
            update(provision_steps)
            .where(provision_steps.c.run_id == run_id, provision_steps.c.position == position)
            .values(**values)
        )
        _progressed(conn, run_id)


async def take_from_detail(db: Database, run_id: str, position: int, key: str) -> Any:
    """Remove `key` from a step's detail and return its value, once: of two callers
    racing, one gets the value and the other None (the row is locked while read)."""
    async with db.write() as conn:
        row = (
            await conn.execute(
                select(provision_steps.c.detail)
                .where(provision_steps.c.run_id == run_id, provision_steps.c.position == position)
                .with_for_update()
            )
        ).first()
        if row is None or key not in row.detail:
            return None
        detail = dict(row.detail)
        value = detail.pop(key)
        await conn.execute(
            update(provision_steps)
            .where(provision_steps.c.run_id == run_id, provision_steps.c.position == position)
            .values(detail=detail)
        )
        return value
