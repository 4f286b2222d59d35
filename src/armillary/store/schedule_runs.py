"""Schedules' firing records: one state row per schedule, and its runs.

The state row holds the last fire time the schedule handled (`handled_at`), the
times status shows, and the status itself; every write to it names the `version`
it read (`save_state`), so two writers — the controller at a fire time and a
`run-now` — cannot both act on one reading: the second gets `Conflict` and retries
from a fresh read. A run row is one run of the schedule's job, with its allocation
while it runs and its outcome once it ended; (schedule, scheduled_at) is unique, so
one fire time can never be recorded twice. The schedule controller writes both in
the transaction that writes the run's allocation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary import timestamps
from armillary.errors import Conflict
from armillary.store.tables import schedule_runs, schedule_states

ACTIVE = ("pending", "running")


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    schedule: str  # a Schedule's name, or `<tenant>/<name>` for an inline schedule
    tenant: str
    owner_uid: str  # the Schedule's uid, or the Tenant's for an inline schedule
    clock_hash: str  # the cron and time zone `handled_at` was counted with
    version: int
    handled_at: dt.datetime  # the last fire time handled, or when counting began
    last_scheduled_at: dt.datetime | None
    last_successful_at: dt.datetime | None
    status: dict[str, Any]
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    id: str
    schedule: str
    tenant: str
    component: str
    trigger: str  # schedule | manual
    scheduled_at: dt.datetime  # the fire time, or when run-now asked
    state: str  # pending | running | succeeded | failed | stopped
    allocation_id: str | None = None
    node: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def _when(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else timestamps.utc(value)


def _state(row: Row[Any]) -> State:
    return State(
        schedule=row.schedule,
        tenant=row.tenant,
        owner_uid=row.owner_uid,
        clock_hash=row.clock_hash,
        version=row.version,
        handled_at=timestamps.utc(row.handled_at),
        last_scheduled_at=_when(row.last_scheduled_at),
        last_successful_at=_when(row.last_successful_at),
        status=row.status,
        updated_at=timestamps.utc(row.updated_at),
    )


def _run(row: Row[Any]) -> Run:
    return Run(
        id=row.id,
        schedule=row.schedule,
        tenant=row.tenant,
        component=row.component,
        trigger=row.trigger,
        scheduled_at=timestamps.utc(row.scheduled_at),
        state=row.state,
        allocation_id=row.allocation_id,
        node=row.node,
        exit_code=row.exit_code,
        reason=row.reason,
        message=row.message,
        created_at=timestamps.utc(row.created_at),
        started_at=_when(row.started_at),
        finished_at=_when(row.finished_at),
    )


# --- state rows -------------------------------------------------------------------------


async def get_state(conn: AsyncConnection, schedule: str) -> State | None:
    query = select(schedule_states).where(schedule_states.c.schedule == schedule)
    row = (await conn.execute(query)).first()
    return None if row is None else _state(row)


async def list_states(conn: AsyncConnection, *, tenant: str | None = None) -> list[State]:
    query = select(schedule_states).order_by(schedule_states.c.schedule)
    if tenant is not None:
        query = query.where(schedule_states.c.tenant == tenant)
    return [_state(row) for row in await conn.execute(query)]


async def create_state(conn: AsyncConnection, state: State) -> State:
    """Insert the first state row of a schedule; `Conflict` if another writer did."""
    values = dataclasses.asdict(state)
    try:
        async with conn.begin_nested():
            await conn.execute(insert(schedule_states).values(**values))
    except IntegrityError:
        raise Conflict(f"schedule {state.schedule!r} was set up by another writer") from None
    return state


async def save_state(conn: AsyncConnection, state: State, *, now: dt.datetime) -> State:
    """Write `state` if the row still holds the version it was read at; the version
    moves by one. `Conflict` if another writer moved it first."""
    values = dataclasses.asdict(state)
    del values["schedule"]
    values.update(version=state.version + 1, updated_at=now)
    result = await conn.execute(
        update(schedule_states)
        .where(
            schedule_states.c.schedule == state.schedule,
            schedule_states.c.version == state.version,
        )
        .values(**values)
    )
    if result.rowcount != 1:
        raise Conflict(f"schedule {state.schedule!r} was changed by another writer; retry")
    return dataclasses.replace(state, version=state.version + 1, updated_at=now)


async def delete_state(conn: AsyncConnection, schedule: str) -> None:
    """The state row and every run of the schedule."""
    await conn.execute(delete(schedule_runs).where(schedule_runs.c.schedule == schedule))
    await conn.execute(delete(schedule_states).where(schedule_states.c.schedule == schedule))


# --- runs -------------------------------------------------------------------------------


async def runs_of(conn: AsyncConnection, schedule: str) -> list[Run]:
    """Every run of `schedule` still recorded, oldest fire time first."""
    query = (
        select(schedule_runs)
        .where(schedule_runs.c.schedule == schedule)
        .order_by(schedule_runs.c.scheduled_at, schedule_runs.c.id)
    )
    return [_run(row) for row in await conn.execute(query)]


async def get_run(conn: AsyncConnection, run_id: str) -> Run | None:
    row = (await conn.execute(select(schedule_runs).where(schedule_runs.c.id == run_id))).first()
    return None if row is None else _run(row)


async def by_allocation(conn: AsyncConnection, allocation_id: str) -> Run | None:
    query = select(schedule_runs).where(schedule_runs.c.allocation_id == allocation_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _run(row)


async def waiting_for_a_node(conn: AsyncConnection) -> set[str]:
    """Schedules with a run that found no node yet."""
    query = select(schedule_runs.c.schedule).where(
        schedule_runs.c.state == "pending", schedule_runs.c.allocation_id.is_(None)
    )
    return {row.schedule for row in await conn.execute(query.distinct())}


async def add_run(conn: AsyncConnection, run: Run) -> Run:
    """Record a new run; `Conflict` if its fire time was recorded already."""
    try:
        async with conn.begin_nested():
            await conn.execute(insert(schedule_runs).values(**dataclasses.asdict(run)))
    except IntegrityError:
        raise Conflict(
            f"schedule {run.schedule!r} already has a run for {timestamps.iso(run.scheduled_at)}"
        ) from None
    return run


async def save_run(conn: AsyncConnection, run: Run) -> Run:
    values = dataclasses.asdict(run)
    del values["id"]
    await conn.execute(update(schedule_runs).where(schedule_runs.c.id == run.id).values(**values))
    return run


async def delete_runs(conn: AsyncConnection, ids: Sequence[str]) -> None:
    if ids:
        await conn.execute(delete(schedule_runs).where(schedule_runs.c.id.in_(list(ids))))
