"""The agent run queue in the store, shared by every server replica.

Written by the webhook endpoint (`create`, inside the transaction that stores the
routed event, so an acknowledged event always has its run), by the operator routes
(`create`, `retry`) and by the run worker (ingress/runner.py: `claim`, `renew`,
`finish`); read by `GET /api/v1/runs`.

States: `queued` → `running` (claimed: `claimed_by` holds a lease until
`lease_until`, renewed by the worker's heartbeat) → `succeeded`, or `failed` (due
again at `next_attempt_at`) → … → `dead` after the last attempt. A claim whose lease
ran out (its server died or stalled) is recovered at the next claim: back to
`queued`, or `dead` if that was its last attempt; the lost attempt counts.

Invariants:
- claims are serialised — one write transaction at a time on SQLite (BEGIN
  IMMEDIATE); on Postgres a transaction-scoped advisory lock around the count and
  the claim, with `FOR UPDATE SKIP LOCKED` on the rows — so the global and per-tenant
  limits on `running` runs hold across replicas, and a run is held by one worker;
- only the worker holding a run's claim can finish it (`finish` is conditional on
  `claimed_by` and `running`), so a run is recorded as succeeded at most once even
  when a lost lease let another worker try it as well.
Rows never leave this module.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary import timestamps
from armillary.errors import Conflict, NotFound
from armillary.ids import new_id
from armillary.store import bulk, feed
from armillary.store.tables import agent_runs

STATES = ("queued", "running", "succeeded", "failed", "dead")
CLAIMABLE = ("queued", "failed")
ANSWER_MAX_CHARS = 64 * 1024
ERROR_MAX_CHARS = 2000
HISTORY_MAX = 50  # attempts kept in `history`, the newest ones
_CLAIM_LOCK = 0x41524D52  # "ARMR": the Postgres advisory lock id serialising claims


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A run to create."""

    tenant: str
    component: str
    input: dict[str, Any]
    requested_by: str
    max_attempts: int
    event_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRun:
    """A run as stored."""

    id: str
    tenant: str
    component: str
    event_id: str | None
    input: dict[str, Any]
    requested_by: str
    state: str
    attempts: int
    max_attempts: int
    next_attempt_at: dt.datetime
    claimed_by: str | None
    lease_until: dt.datetime | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    status_code: int | None
    answer: str | None
    duration_ms: int | None
    error: str | None
    history: list[dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """What one attempt came to, as the worker saw it."""

    started_at: dt.datetime
    status_code: int | None
    answer: str | None
    duration_ms: int
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """At most `total` runs `running` at once, and `per_tenant` of any one tenant."""

    total: int
    per_tenant: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """What `search` returns: every given field must match; newest first, by
    (`created_at`, `id`), starting strictly after `after` (a page's last) if given."""

    tenant: str | None = None
    state: str | None = None
    event_id: str | None = None
    limit: int = 50
    after: tuple[dt.datetime, str] | None = None


def _run(row: Row[Any]) -> AgentRun:
    def at(value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else timestamps.utc(value)

    return AgentRun(
        id=row.id,
        tenant=row.tenant,
        component=row.component,
        event_id=row.event_id,
        input=dict(row.input),
        requested_by=row.requested_by,
        state=row.state,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        next_attempt_at=timestamps.utc(row.next_attempt_at),
        claimed_by=row.claimed_by,
        lease_until=at(row.lease_until),
        created_at=timestamps.utc(row.created_at),
        started_at=at(row.started_at),
        finished_at=at(row.finished_at),
        status_code=row.status_code,
        answer=row.answer,
        duration_ms=row.duration_ms,
        error=row.error,
        history=list(row.history),
    )


def _announce(conn: AsyncConnection | Connection, run_id: str, tenant: str) -> None:
    """Wake this server's worker once the transaction commits (others poll)."""
    feed.record(conn.info, feed.Change(kind="AgentRun", name=run_id, tenant=tenant))


def _progressed(conn: AsyncConnection | Connection, run_id: str, tenant: str) -> None:
    """A run claimed or finished, on the feed's status topic: for the live channel
    `runs` (api/live), never a wake-up of the workers, which hear specs alone."""
    feed.record(conn.info, feed.Change(kind="AgentRun", name=run_id, tenant=tenant, status=True))


async def create(conn: AsyncConnection, request: Request, *, now: dt.datetime) -> str:
    """Queue a run on `conn` (committed with the caller's transaction); its id."""
    (run_id,) = await conn.run_sync(create_many, [request], now=now)
    return run_id


def create_many(conn: Connection, requests: list[Request], *, now: dt.datetime) -> list[str]:
    """`create` for each of `requests`, in one insert, on a synchronous connection (see
    `Database.write_sync`); their ids in order."""
    now = timestamps.utc(now)
    ids = [new_id() for _ in requests]
    if not requests:
        return ids
    rows: list[dict[str, Any]] = [
        {
            "id": run_id,
            "tenant": request.tenant,
            "component": request.component,
            "event_id": request.event_id,
            "input": request.input,
            "requested_by": request.requested_by,
            "state": "queued",
            "attempts": 0,
            "max_attempts": request.max_attempts,
            "next_attempt_at": now,
            "created_at": now,
            "history": [],
        }
        for run_id, request in zip(ids, requests, strict=True)
    ]
    bulk.insert_rows(conn, agent_runs, rows)
    # One wake-up per tenant, not per run: the worker re-reads the queue anyway.
    for tenant, run_id in {
        r.tenant: run_id for r, run_id in zip(requests, ids, strict=True)
    }.items():
        _announce(conn, run_id, tenant)
    return ids


async def get(conn: AsyncConnection, run_id: str) -> AgentRun:
    """The run `run_id`, or `NotFound`."""
    row = (await conn.execute(select(agent_runs).where(agent_runs.c.id == run_id))).first()
    if row is None:
        raise NotFound(f"agent run {run_id!r} not found")
    return _run(row)


async def search(conn: AsyncConnection, wanted: Filter) -> list[AgentRun]:
    """Runs matching `wanted`, newest first (every value a bound parameter); the order
    is total, (`created_at`, `id`) both descending, so pages that each start after the
    last run of the one before list every run once while new ones are queued."""
    query = select(agent_runs)
    if wanted.after is not None:
        at, last = timestamps.utc(wanted.after[0]), wanted.after[1]
        query = query.where(
            or_(
                agent_runs.c.created_at < at,
                and_(agent_runs.c.created_at == at, agent_runs.c.id < last),
            )
        )
    if wanted.tenant is not None:
        query = query.where(agent_runs.c.tenant == wanted.tenant)
    if wanted.state is not None:
        query = query.where(agent_runs.c.state == wanted.state)
    if wanted.event_id is not None:
        query = query.where(agent_runs.c.event_id == wanted.event_id)
    newest = (agent_runs.c.created_at.desc(), agent_runs.c.id.desc())
    query = query.order_by(*newest).limit(wanted.limit)
    return [_run(row) for row in await conn.execute(query)]


def claim(
    conn: Connection, *, worker: str, now: dt.datetime, lease_s: float, limits: Limits, most: int
) -> list[AgentRun]:
    """Recover expired claims, then claim up to `most` due runs for `worker` within
    `limits`, the oldest due first: the tenant whose oldest due run has waited longest
    is served first. Call in a write transaction (`Database.write_sync`).

    The due runs are read oldest first through the index on (state, next_attempt_at),
    a window of `_window(free)` rows per claimable state, not every due run: a claim's
    cost depends on the runs it claims, not on the depth of the queue. When that window
    ends with a tenant at its limit and slots left over (one tenant's backlog filling
    the head of the queue), the other tenants' oldest due runs are looked up by tenant."""
    now = timestamps.utc(now)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _CLAIM_LOCK})
    recover(conn, now=now)
    running = _running_by_tenant(conn)
    free = min(most, limits.total - sum(running.values()))
    if free <= 0:
        return []
    window = _window(free)
    due = _due(conn, now=now, window=window)
    picked = _pick(due, running, limits=limits, free=free)
    if len(picked) < free and len(due) >= window:
        full = {t for t, n in running.items() if n >= limits.per_tenant}
        taken = {r.id for r in picked}
        more = _due_by_tenant(conn, now=now, skip=full, limits=limits)
        picked += _pick(
            [r for r in more if r.id not in taken], running, limits=limits, free=free - len(picked)
        )
    if not picked:
        return []
    claimed = conn.execute(
        update(agent_runs)
        .where(agent_runs.c.id.in_([r.id for r in picked]), agent_runs.c.state.in_(CLAIMABLE))
        .values(
            state="running",
            claimed_by=worker,
            lease_until=now + dt.timedelta(seconds=lease_s),
            attempts=agent_runs.c.attempts + 1,
            started_at=func.coalesce(agent_runs.c.started_at, now),
        )
        .returning(*agent_runs.c)
    )
    runs = sorted((_run(row) for row in claimed), key=lambda r: (r.created_at, r.id))
    for run in runs:
        _progressed(conn, run.id, run.tenant)
    return runs


@dataclass(frozen=True, slots=True, kw_only=True)
class Due:
    """A claimable run as the claim sees it."""

    id: str
    tenant: str
    next_attempt_at: dt.datetime
    created_at: dt.datetime


def _due_of(row: Row[Any, Any, Any, Any]) -> Due:
    return Due(id=row[0], tenant=row[1], next_attempt_at=row[2], created_at=row[3])


def _window(free: int) -> int:
    return 2 * free + 16


_DUE_COLUMNS = (
    agent_runs.c.id,
    agent_runs.c.tenant,
    agent_runs.c.next_attempt_at,
    agent_runs.c.created_at,
)
"""What a claim reads of each due run (`Due`)."""


def _due(conn: Connection, *, now: dt.datetime, window: int) -> list[Due]:
    """The `window` oldest due runs of each claimable state, oldest first (one ordered
    index range per state: an IN over both would have the store sort every due run)."""
    found: list[Due] = []
    for state in CLAIMABLE:
        query = (
            select(*_DUE_COLUMNS)
            .where(agent_runs.c.state == state, agent_runs.c.next_attempt_at <= now)
            .order_by(agent_runs.c.next_attempt_at)
            .limit(window)
            .with_for_update(skip_locked=True)
        )
        found += [_due_of(row) for row in conn.execute(query)]
    return sorted(found, key=lambda d: (d.next_attempt_at, d.created_at))


def _due_by_tenant(
    conn: Connection, *, now: dt.datetime, skip: set[str], limits: Limits
) -> list[Due]:
    """The oldest due runs of every tenant but `skip`, at most `limits.per_tenant`
    each, oldest first (the slow path of `claim`: it reads every due run's tenant)."""
    due = agent_runs.c.state.in_(CLAIMABLE) & (agent_runs.c.next_attempt_at <= now)
    tenants = select(agent_runs.c.tenant).where(due).group_by(agent_runs.c.tenant)
    if skip:
        tenants = tenants.where(agent_runs.c.tenant.not_in(sorted(skip)))
    found: list[Due] = []
    for tenant in list(conn.execute(tenants).scalars())[: limits.total]:
        query = (
            select(*_DUE_COLUMNS)
            .where(due, agent_runs.c.tenant == tenant)
            .order_by(agent_runs.c.next_attempt_at, agent_runs.c.created_at)
            .limit(limits.per_tenant)
            .with_for_update(skip_locked=True)
        )
        found += [_due_of(row) for row in conn.execute(query)]
    return sorted(found, key=lambda d: (d.next_attempt_at, d.created_at))


def _pick(due: list[Due], running: dict[str, int], *, limits: Limits, free: int) -> list[Due]:
    """The runs of `due` (oldest first) to claim: at most `free`, and no tenant past
    `limits.per_tenant` counting `running` (updated with what is picked). Pure."""
    picked: list[Due] = []
    for run in due:
        if len(picked) >= free:
            break
        held = running.get(run.tenant, 0)
        if held < limits.per_tenant:
            running[run.tenant] = held + 1
            picked.append(run)
    return picked


def _running_by_tenant(conn: Connection) -> dict[str, int]:
    query = (
        select(agent_runs.c.tenant, func.count().label("n"))
        .where(agent_runs.c.state == "running")
        .group_by(agent_runs.c.tenant)
    )
    return {row.tenant: int(row.n) for row in conn.execute(query)}


def recover(conn: Connection, *, now: dt.datetime) -> list[str]:
    """Claims whose lease ran out go back to `queued` (or `dead`, when that was their
    last attempt), the lost attempt noted in their history; the ids recovered."""
    now = timestamps.utc(now)
    expired = (
        select(agent_runs)
        .where(agent_runs.c.state == "running", agent_runs.c.lease_until < now)
        .with_for_update(skip_locked=True)
    )
    recovered = []
    for row in conn.execute(expired).all():
        run = _run(row)
        error = f"lease expired: worker {run.claimed_by} stopped renewing its claim"
        dead = run.attempts >= run.max_attempts
        entry = {"attempt": run.attempts, "worker": run.claimed_by, "error": error}
        conn.execute(
            update(agent_runs)
            .where(agent_runs.c.id == run.id, agent_runs.c.claimed_by == run.claimed_by)
            .values(
                state="dead" if dead else "queued",
                claimed_by=None,
                lease_until=None,
                next_attempt_at=now,
                finished_at=now if dead else None,
                error=error,
                history=_appended(run.history, entry),
            )
        )
        recovered.append(run.id)
    return recovered


async def renew(
    conn: AsyncConnection, *, worker: str, ids: Sequence[str], until: dt.datetime
) -> int:
    """Extend `worker`'s leases on `ids` to `until`; how many it still holds."""
    if not ids:
        return 0
    result = await conn.execute(
        update(agent_runs)
        .where(
            agent_runs.c.id.in_(list(ids)),
            agent_runs.c.claimed_by == worker,
            agent_runs.c.state == "running",
        )
        .values(lease_until=timestamps.utc(until))
    )
    return int(result.rowcount)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """An attempt to record (`finish`): the state it moves its run to, and when the
    run is due again if it failed."""

    run: AgentRun
    attempt: Attempt
    state: str  # succeeded | failed | dead
    next_attempt_at: dt.datetime | None


def finish(
    conn: Connection, *, outcomes: Sequence[Outcome], worker: str, now: dt.datetime
) -> set[str]:
    """Record each of `outcomes` and move its run to its state, in one read and one
    update of many rows (call in a write transaction: `Database.write_sync`); the ids
    of the runs recorded. A run `worker` no longer holds (its lease lapsed and it was
    recovered or claimed again) is left as it is."""
    if not outcomes:
        return set()
    now = timestamps.utc(now)
    ids = [o.run.id for o in outcomes]
    current = select(agent_runs.c.id, agent_runs.c.attempts, agent_runs.c.history).where(
        agent_runs.c.id.in_(ids),
        agent_runs.c.claimed_by == worker,
        agent_runs.c.state == "running",
    )
    if conn.dialect.name == "postgresql":  # held until the update: no recovery between
        current = current.with_for_update()
    held = {row.id: (row.attempts, row.history) for row in conn.execute(current)}
    rows: list[dict[str, Any]] = []
    for o in outcomes:
        if o.run.id not in held:
            continue
        attempts, history = held[o.run.id]
        error = _clip(o.attempt.error, ERROR_MAX_CHARS)
        entry = {
            "attempt": attempts,
            "worker": worker,
            "startedAt": timestamps.iso(o.attempt.started_at),
            "durationMs": o.attempt.duration_ms,
            "status": o.attempt.status_code,
            "error": error,
        }
        rows.append(
            {
                "b_id": o.run.id,
                "b_worker": worker,
                "state": o.state,
                "next_attempt_at": timestamps.utc(o.next_attempt_at or now),
                "finished_at": now if o.state in ("succeeded", "dead") else None,
                "status_code": o.attempt.status_code,
                "answer": _clip(o.attempt.answer, ANSWER_MAX_CHARS),
                "duration_ms": o.attempt.duration_ms,
                "error": error,
                "history": _appended(list(history), entry),
            }
        )
    if rows:
        conn.execute(_FINISH.values(claimed_by=None, lease_until=None), rows)
        tenants = {o.run.id: o.run.tenant for o in outcomes}
        for row in rows:
            _progressed(conn, str(row["b_id"]), tenants[str(row["b_id"])])
    return {str(row["b_id"]) for row in rows}


# The values of each row are bound by column name; the conditions repeat the read's.
_FINISH = update(agent_runs).where(
    agent_runs.c.id == bindparam("b_id"),
    agent_runs.c.claimed_by == bindparam("b_worker"),
    agent_runs.c.state == "running",
)


async def retry(conn: AsyncConnection, run_id: str, *, now: dt.datetime) -> AgentRun:
    """Queue a `failed` or `dead` run again, now, with a fresh budget of attempts (the
    count restarts at 0; the history is kept). `Conflict` in any other state."""
    run = await get(conn, run_id)
    if run.state not in ("failed", "dead"):
        raise Conflict(f"agent run {run_id} is {run.state}; only failed or dead runs are retried")
    result = await conn.execute(
        update(agent_runs)
        .where(agent_runs.c.id == run_id, agent_runs.c.state == run.state)
        .values(
            state="queued",
            attempts=0,
            next_attempt_at=timestamps.utc(now),
            finished_at=None,
        )
    )
    if not result.rowcount:  # a worker moved it meanwhile (a failed run claimed again)
        raise Conflict(f"agent run {run_id} changed while being retried; look again")
    _announce(conn, run_id, run.tenant)
    return await get(conn, run_id)


def _appended(history: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [*history, entry][-HISTORY_MAX:]


def _clip(value: str | None, limit: int) -> str | None:
    # Postgres text cannot hold NUL; an agent's answer may.
    return None if value is None else value[:limit].replace("\x00", "\ufffd")
