"""Claims and completions of the agent run queue in batches, on a real store (SQLite
and Postgres), with no server: a batch claim keeps the global and per-tenant limits,
serves every tenant even when one tenant's backlog fills the head of the queue, and
is exclusive when two workers claim at once; a batch of completions records only the
runs its worker still holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections import Counter

from armillary.store import agent_runs
from armillary.store.database import Database
from armillary.store.tables import agent_runs as runs_table

NOW = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)
LIMITS = agent_runs.Limits(total=10, per_tenant=3)


async def queue(db: Database, tenant: str, n: int, *, at: dt.datetime) -> list[str]:
    requests = [
        agent_runs.Request(
            tenant=tenant, component="agent", input={}, requested_by="test", max_attempts=3
        )
        for _ in range(n)
    ]
    return await db.write_sync(lambda conn: agent_runs.create_many(conn, requests, now=at))


async def claim(
    db: Database, worker: str, *, most: int = 100, limits: agent_runs.Limits = LIMITS
) -> list[agent_runs.AgentRun]:
    return await db.write_sync(
        functools.partial(
            agent_runs.claim, worker=worker, now=NOW, lease_s=30, limits=limits, most=most
        )
    )


async def test_a_batch_claim_keeps_the_limits_and_serves_every_tenant(store: Database) -> None:
    # One tenant's backlog, older than anything else, fills the head of the queue far
    # past the window a claim reads first.
    backlog = await queue(store, "hot", 80, at=NOW - dt.timedelta(minutes=10))
    others = {t: await queue(store, t, 5, at=NOW - dt.timedelta(minutes=1)) for t in ("a", "b")}
    first = await claim(store, "w1")
    by_tenant = Counter(r.tenant for r in first)
    assert by_tenant == {"hot": 3, "a": 3, "b": 3}
    assert all(r.state == "running" and r.claimed_by == "w1" and r.attempts == 1 for r in first)
    assert {r.id for r in first if r.tenant == "hot"} <= set(backlog)
    assert {r.id for r in first if r.tenant == "a"} <= set(others["a"])
    # every tenant at its limit: nothing more, for any worker
    assert await claim(store, "w2") == []


async def test_a_batch_claim_takes_at_most_what_it_is_asked_and_the_total(
    store: Database,
) -> None:
    for tenant in ("a", "b", "c", "d", "e"):
        await queue(store, tenant, 4, at=NOW - dt.timedelta(minutes=1))
    assert len(await claim(store, "w1", most=4)) == 4
    second = await claim(store, "w2")
    assert len(second) == LIMITS.total - 4  # the global limit counts w1's runs too
    assert await claim(store, "w3") == []


async def test_two_workers_claiming_at_once_never_share_a_run(store: Database) -> None:
    for tenant in ("a", "b", "c", "d"):
        await queue(store, tenant, 20, at=NOW - dt.timedelta(minutes=1))
    wide = agent_runs.Limits(total=40, per_tenant=8)
    one, two = await asyncio.gather(
        claim(store, "w1", limits=wide), claim(store, "w2", limits=wide)
    )
    ids = [r.id for r in one + two]
    assert len(ids) == len(set(ids)) == 32  # 4 tenants × 8: the per-tenant limit binds
    assert max(Counter(r.tenant for r in one + two).values()) == 8


async def test_a_batch_of_completions_records_only_the_runs_still_held(store: Database) -> None:
    await queue(store, "a", 3, at=NOW - dt.timedelta(minutes=1))
    claimed = await claim(store, "w1")
    lost = claimed[0]
    async with store.write() as conn:  # as if its lease lapsed and another took it
        await conn.execute(
            runs_table.update().where(runs_table.c.id == lost.id).values(claimed_by="w2")
        )
    attempt = agent_runs.Attempt(
        started_at=NOW, status_code=200, answer="{}", duration_ms=3, error=None
    )
    outcomes = [
        agent_runs.Outcome(run=r, attempt=attempt, state="succeeded", next_attempt_at=None)
        for r in claimed
    ]
    kept = await store.write_sync(
        functools.partial(agent_runs.finish, outcomes=outcomes, worker="w1", now=NOW)
    )
    assert kept == {r.id for r in claimed[1:]}
    async with store.read() as conn:
        runs = {r.id: await agent_runs.get(conn, r.id) for r in claimed}
    assert runs[lost.id].state == "running" and runs[lost.id].claimed_by == "w2"
    for run in claimed[1:]:
        done = runs[run.id]
        assert done.state == "succeeded" and done.claimed_by is None and done.status_code == 200
        assert done.history[-1]["worker"] == "w1" and done.history[-1]["attempt"] == 1
