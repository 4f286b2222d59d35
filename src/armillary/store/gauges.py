"""What the store holds, counted for `GET /metrics` at scrape time: tenants by
condition, replicas by state and their restarts, rollouts by state, nodes and their
heartbeat age, agent runs, provisioning runs.

Read at scrape time rather than counted as things happen: the store is the truth
every server replica shares, so figures agree across replicas and survive a restart.
A few GROUP BY queries in one read transaction, the JSON of tenant statuses and
replica reports looked into by the database itself: at 1,000 tenants and 3,000 replicas the whole
scrape stays well under 100 ms (docs/performance.md).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.store.tables import agent_runs, allocations, nodes, provision_runs, resources
from armillary.store.tables import rollouts as rollouts_table

UNREPORTED = "unreported"
"""The state of a replica its node has not reported on yet."""

# Tenants by condition, counted by the database from the status JSON: nothing but
# the counts crosses the wire (reading 1,000 statuses into Python took most of a scrape).
_CONDITIONS = {
    "sqlite": text(
        "SELECT json_extract(c.value, '$.type'), json_extract(c.value, '$.status'), count(*) "
        "FROM resources, json_each(resources.status, '$.conditions') AS c "
        "WHERE resources.kind = 'Tenant' GROUP BY 1, 2"
    ),
    "postgresql": text(
        "SELECT c.value ->> 'type', c.value ->> 'status', count(*) "
        "FROM resources, jsonb_array_elements(CASE WHEN jsonb_typeof(resources.status -> "
        "'conditions') = 'array' THEN resources.status -> 'conditions' ELSE '[]'::jsonb END) "
        "AS c WHERE resources.kind = 'Tenant' GROUP BY 1, 2"
    ),
}


@dataclass(slots=True, kw_only=True)
class Fleet:
    tenants: int = 0
    tenant_conditions: Counter[tuple[str, ...]] = field(default_factory=Counter)
    replicas: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    rollouts: Counter[str] = field(default_factory=Counter)
    oldest_progressing_s: float = 0.0
    nodes: Counter[str] = field(default_factory=Counter)
    node_connected: dict[str, bool] = field(default_factory=dict)
    node_heartbeat_age_s: dict[str, float] = field(default_factory=dict)
    agent_runs: Counter[str] = field(default_factory=Counter)
    agent_run_queue_depth: int = 0
    provisioning_runs: Counter[str] = field(default_factory=Counter)


async def read(conn: AsyncConnection, *, now: dt.datetime) -> Fleet:
    fleet = Fleet()
    count = await conn.execute(select(func.count()).where(resources.c.kind == "Tenant"))
    fleet.tenants = int(count.scalar_one())
    result = await conn.execute(_CONDITIONS[conn.dialect.name])
    for kind, status, n in result:
        if isinstance(kind, str):
            fleet.tenant_conditions[(kind, str(status or "Unknown").lower())] += n
    state = allocations.c.report["state"].as_string()
    restarts = func.coalesce(func.sum(allocations.c.report["restarts"].as_integer()), 0)
    result = await conn.execute(select(state, func.count(), restarts).group_by(state))
    for reported, n, restarted in result:
        fleet.replicas[reported or UNREPORTED] += n
        fleet.restarts += int(restarted or 0)
    result = await conn.execute(
        select(
            rollouts_table.c.state, func.count(), func.min(rollouts_table.c.started_at)
        ).group_by(rollouts_table.c.state)
    )
    for state, count, oldest in result:
        fleet.rollouts[state] = count
        if state == "progressing" and oldest is not None:
            fleet.oldest_progressing_s = max(0.0, (now - _aware(oldest)).total_seconds())
    result = await conn.execute(
        select(
            nodes.c.name,
            nodes.c.connected,
            nodes.c.schedulable,
            nodes.c.heartbeat_at,
            nodes.c.drain_started_at,
            nodes.c.drained_at,
            nodes.c.lost_at,
        )
    )
    for name, connected, schedulable, heartbeat_at, drain_started_at, drained_at, lost_at in result:
        fleet.nodes["connected" if connected else "disconnected"] += 1
        if not schedulable:
            fleet.nodes["cordoned"] += 1
        if drain_started_at is not None:
            fleet.nodes["drained" if drained_at is not None else "draining"] += 1
        if lost_at is not None:
            fleet.nodes["lost"] += 1
        fleet.node_connected[name] = bool(connected)
        if heartbeat_at is not None:
            age = (now - _aware(heartbeat_at)).total_seconds()
            fleet.node_heartbeat_age_s[name] = max(0.0, age)
    result = await conn.execute(
        select(agent_runs.c.state, func.count()).group_by(agent_runs.c.state)
    )
    fleet.agent_runs.update({state: count for state, count in result})
    depth = await conn.execute(
        select(func.count()).where(
            and_(
                agent_runs.c.state.in_(("queued", "failed")),
                agent_runs.c.next_attempt_at <= now,
            )
        )
    )
    fleet.agent_run_queue_depth = int(depth.scalar_one())
    result = await conn.execute(
        select(provision_runs.c.state, func.count()).group_by(provision_runs.c.state)
    )
    fleet.provisioning_runs.update({state: count for state, count in result})
    return fleet


def _aware(at: dt.datetime) -> dt.datetime:
    """SQLite gives back naive datetimes, stored as UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
