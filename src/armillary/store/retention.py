"""Retention in the store: which finished rows of each kept history may go, and how many
there are.

Five histories grow without end unless pruned: webhook `events`, `agent-runs`,
`provisioning-runs`, `schedule-runs` and the `audit` log. Each has a `Policy`: a maximum
age (counted from when the row was made: an event's receipt, a run's creation, an
audit row's time) and a maximum count (the newest rows are kept). `expire` removes one
batch of the oldest rows past either limit, in the caller's transaction, and says how
many went; the caller (control/retention.py) commits each batch on its own, so a long
backlog never holds SQLite's one writer for long.

Only finished things go, whatever their age:
- an agent run while `queued`, `running` or `failed` (due again) is kept;
- an event is kept as long as a run made for it is (`agent_runs.event_id`, no
  foreign key: checked here), finished or not: an operator may retry a dead run, and
  the retried call carries the event. Runs are visited first, so an event whose run
  expires goes in the same pass when it is past its own policy;
- a provisioning run while `pending` or `running` is kept; its steps go with it
  (`provision_steps.run_id` references it);
- a schedule run while `pending` or `running` is kept (its allocation still exists).
Unfinished rows still count toward the count limit: it bounds the table, and a backlog
of unfinished rows makes finished ones go sooner, never the unfinished ones.

Deletes are idempotent (a row already gone is simply not found again), so two servers
running retention over the same store at once remove each row once between them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary import timestamps
from armillary.store.tables import (
    agent_runs,
    audit_log,
    events,
    provision_runs,
    provision_steps,
    schedule_runs,
)

KINDS = ("agent-runs", "events", "provisioning-runs", "schedule-runs", "audit")
"""Every kept history, in the order a retention pass visits them and the route lists them."""

AGENT_RUNS_FINISHED = ("succeeded", "dead")
PROVISIONING_RUNS_FINISHED = ("succeeded", "failed", "rolled-back")
SCHEDULE_RUNS_FINISHED = ("succeeded", "failed", "stopped")


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How long and how many rows of one kind are kept; None: no limit of that sort."""

    max_age_s: float | None = None
    max_count: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Kept:
    """What one kind holds now: its rows and the time of the oldest (None when empty)."""

    count: int
    oldest: dt.datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _History:
    table: Table
    at: ColumnElement[Any]  # when a row was made: age and order are counted from it
    key: ColumnElement[Any]  # the primary key, to break ties in the order


_HISTORIES = {
    "events": _History(table=events, at=events.c.received_at, key=events.c.id),
    "agent-runs": _History(table=agent_runs, at=agent_runs.c.created_at, key=agent_runs.c.id),
    "provisioning-runs": _History(
        table=provision_runs, at=provision_runs.c.created_at, key=provision_runs.c.id
    ),
    "schedule-runs": _History(
        table=schedule_runs, at=schedule_runs.c.created_at, key=schedule_runs.c.id
    ),
    "audit": _History(table=audit_log, at=audit_log.c.at, key=audit_log.c.id),
}


def _finished(kind: str) -> ColumnElement[bool]:
    """The rows of `kind` that may go once past the policy."""
    if kind == "events":
        return not_(exists().where(agent_runs.c.event_id == events.c.id))
    if kind == "agent-runs":
        return agent_runs.c.state.in_(AGENT_RUNS_FINISHED)
    if kind == "provisioning-runs":
        return provision_runs.c.state.in_(PROVISIONING_RUNS_FINISHED)
    if kind == "schedule-runs":
        return schedule_runs.c.state.in_(SCHEDULE_RUNS_FINISHED)
    return true()


async def _past(
    conn: AsyncConnection, history: _History, policy: Policy, *, now: dt.datetime
) -> ColumnElement[bool] | None:
    """The rows past the age or outside the newest `max_count`; None: nothing is."""
    limits: list[ColumnElement[bool]] = []
    if policy.max_age_s is not None:
        cutoff = timestamps.utc(now) - dt.timedelta(seconds=policy.max_age_s)
        limits.append(history.at < cutoff)
    if policy.max_count is not None:
        # The newest row past the count: it and every older one are outside it.
        first_out = (
            await conn.execute(
                select(history.at, history.key)
                .order_by(history.at.desc(), history.key.desc())
                .offset(policy.max_count)
                .limit(1)
            )
        ).first()
        if first_out is not None:
            at, key = first_out
            limits.append(or_(history.at < at, and_(history.at == at, history.key <= key)))
    return or_(*limits) if limits else None


async def expire(
    conn: AsyncConnection, kind: str, policy: Policy, *, now: dt.datetime, batch: int
) -> int:
    """Remove up to `batch` of the oldest finished rows of `kind` past `policy`, in the
    caller's transaction; how many went. Call again while it returns a full batch."""
    history = _HISTORIES[kind]
    past = await _past(conn, history, policy, now=now)
    if past is None:
        return 0
    chosen = (
        select(history.key)
        .where(past, _finished(kind))
        .order_by(history.at, history.key)
        .limit(batch)
    )
    ids = list((await conn.execute(chosen)).scalars())
    if not ids:
        return 0
    if kind == "provisioning-runs":
        await conn.execute(delete(provision_steps).where(provision_steps.c.run_id.in_(ids)))
    result = await conn.execute(delete(history.table).where(history.key.in_(ids)))
    return int(result.rowcount)


async def kept(conn: AsyncConnection, kind: str) -> Kept:
    """How many rows of `kind` are kept now, and when the oldest was made."""
    history = _HISTORIES[kind]
    count, oldest = (
        await conn.execute(select(func.count(), func.min(history.at)).select_from(history.table))
    ).one()
    return Kept(count=int(count), oldest=None if oldest is None else timestamps.utc(oldest))
