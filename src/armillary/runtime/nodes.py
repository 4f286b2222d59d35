"""The nodes runtime: a tenant's replicas as allocations on node daemons.

`converge(tenant, instance)` takes one step for one tenant inside one write
transaction: it brings the cluster snapshot up to date (`cluster.Snapshot`: the
nodes and what every allocation takes, read again only where the feed says they
changed), reads the tenant's allocations, asks `rollout.step` what to do, places
what must be created (`scheduler.place`, on the snapshot's index) and writes the
allocations — fixed ports as declared, dynamic ports left to the node, which sees
what is really free on its machine and reports what it picked. The node hub sees
the change on the feed and sends each affected node its new set. Placement that
fails is reported back, with the scheduler's reasons, for the tenant's status.

`place_run` places one run of a scheduled job the same way, in the schedule
controller's transaction. Its allocation is marked with the run (`schedule_run`),
and `converge` leaves marked allocations out: a run is not a replica of the stack,
so a tenant's step neither counts it nor removes it.

A replica on a node declared lost is removed in the step that places its successor
elsewhere; while no node takes the successor, the old allocation stays (the step's
`unplaced` says why), so a lone node that comes back keeps its replicas.

An allocation that takes env from Secrets carries only their names (`secrets`, beside
the protocol's fields): the node hub reads and decrypts the values when it sends the
allocation to its node, so the allocations table never holds a value.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from armillary import protocol
from armillary.resources import naming
from armillary.runtime import cluster, rollout, scheduler
from armillary.runtime.base import Outcome, Unplaced
from armillary.runtime.instance import Instance, Template, url_variable
from armillary.store import allocations
from armillary.store.database import Database, Tx


class NodesRuntime:
    """Realises instances as allocations; one step per call, safe to repeat."""

    name = "nodes"

    def __init__(
        self,
        db: Database,
        *,
        strategy: scheduler.Strategy = "spread",
    ) -> None:
        self._db = db
        self._strategy = strategy
        # Nodes and what every allocation takes, kept current from `db`'s feed and
        # refreshed at the start of each step: a step reads the rows that changed, not
        # the fleet. Built at the first step, so after the server's `disconnect_all`.
        self._cluster = cluster.Snapshot(db.feed)

    def prepare(self, instance: Instance) -> Instance:
        return instance  # expansion writes the nodes runtime's problems

    async def converge(
        self, tenant: str, instance: Instance | None, *, now: dt.datetime
    ) -> Outcome:
        # Most steps change nothing (a report came in, a resync): decided on a read,
        # they never queue for the write lock. A step that will write decides again
        # inside its write transaction, on what that sees.
        async with self._db.read() as conn:
            await self._cluster.refresh(conn)
            held = _replicas(await allocations.for_tenant(conn, tenant))
            plan = rollout.step(instance, [_current(a, self._cluster) for a in held])
        if not plan.create and not plan.remove:
            return Outcome(step=plan)
        async with self._db.write() as conn:
            await self._cluster.refresh(conn)
            held = _replicas(await allocations.for_tenant(conn, tenant))
            current = [_current(a, self._cluster) for a in held]
            plan = rollout.step(instance, current)
            by_id = {a.id: a for a in held}
            removing = rollout.unique(plan.remove)
            # A replica on a lost node goes once its successor has a node: while none
            # takes it, the old one may still be the only copy (a lone node that comes
            # back then keeps its replicas, adopted, instead of restarting them).
            lost = {c.id: (c.component, c.replica) for c in current if c.node_state == "lost"}
            await allocations.remove(conn, [by_id[i] for i in removing if i not in lost])
            unplaced = await self._create(conn, tenant, plan.create, now=now) if plan.create else {}
            stranded = {(c, r) for c, u in unplaced.items() for r in u.replicas}
            gone = [by_id[i] for i in removing if i in lost and lost[i] not in stranded]
            await allocations.remove(conn, gone)
        return Outcome(step=plan, unplaced=unplaced)

    async def place_run(
        self,
        conn: Tx,
        *,
        run: str,
        tenant: str,
        template: Template,
        name: str,
        env: dict[str, str],
        now: dt.datetime,
    ) -> allocations.Allocation | str:
        """Place one run of the job `template` in the caller's transaction: the
        allocation written, or why no node takes it. The run gets `env` and the URL of
        each dependency whose replica 0 is ready (it does not wait for the others)."""
        await self._cluster.refresh(conn)
        held = _replicas(await allocations.for_tenant(conn, tenant))
        seen = (_current(a, self._cluster) for a in held)
        ready = [c for c in seen if c.replica == 0 and c.ready]
        urls = {c.component: c.url for c in ready}
        extra_env = {url_variable(d): u for d in template.depends_on if (u := urls.get(d))}
        extra_env.update(env)
        create = rollout.Create(
            template=template,
            replica=0,
            spec_hash=template.spec_hash(extra_env),
            extra_env=extra_env,
        )
        unplaced = await self._create(conn, tenant, [create], now=now, schedule_run=run, name=name)
        if unplaced:
            return unplaced[template.component].reason
        written = await allocations.for_tenant(conn, tenant)
        return next(a for a in written if a.schedule_run == run)

    async def _create(
        self,
        conn: Tx,
        tenant: str,
        creates: list[rollout.Create],
        *,
        now: dt.datetime,
        schedule_run: str | None = None,
        name: str | None = None,
    ) -> dict[str, Unplaced]:
        demands = [
            scheduler.Demand(
                key=f"{c.template.component}/{c.replica}",
                group=f"{tenant}/{c.template.component}",
                cpu_millicores=c.template.cpu_millicores,
                memory_mb=c.template.memory_mb,
                node_labels=c.template.node_labels,
            )
            for c in creates
        ]
        # On the snapshot as of this step's refresh, plus what this transaction has
        # removed or added itself: the fleet is not read, whatever its size.
        placement = await self._cluster.place(conn, demands, self._strategy)
        unplaced: dict[str, Unplaced] = {}
        batch: list[allocations.Allocation] = []
        for create, demand in zip(creates, demands, strict=True):
            node = placement.assigned.get(demand.key)
            if node is None:
                component = create.template.component
                earlier = unplaced.get(component)
                unplaced[component] = Unplaced(
                    reason=placement.explain(demand.key),
                    replicas=(*(earlier.replicas if earlier else ()), create.replica),
                )
                continue
            ports = self._ports(create)
            spec = _spec(tenant, create, ports, name=name)
            batch.append(
                allocations.Allocation(
                    id=spec.id,
                    tenant=tenant,
                    component=create.template.component,
                    replica=create.replica,
                    node=node,
                    spec_hash=create.spec_hash,
                    spec={
                        **protocol.encode(spec),
                        "cpu_millicores": create.template.cpu_millicores,
                        "memory_mb": create.template.memory_mb,
                        **_secret_refs(create.template),
                    },
                    report=None,
                    created_at=now,
                    reported_at=None,
                    schedule_run=schedule_run,
                )
            )
        await allocations.add(conn, batch)
        return unplaced

    def _ports(self, create: rollout.Create) -> dict[str, int]:
        # Fixed ports as declared; 0 asks the node to pick a free one (only the node can
        # see what is really free on its machine) and report it back.
        return {name: fixed or 0 for name, fixed in create.template.ports}


__all__ = ["NodesRuntime", "Outcome", "Unplaced", "url_of"]


def _spec(
    tenant: str, create: rollout.Create, ports: dict[str, int], *, name: str | None = None
) -> protocol.AllocationSpec:
    template = create.template
    return protocol.AllocationSpec(
        id=str(uuid.uuid4()),
        tenant=tenant,
        component=template.component,
        name=name or naming.replica_name(template.component, tenant, create.replica),
        index=create.replica,
        type="job" if template.type == "job" else "service",
        spec_hash=create.spec_hash,
        command=list(template.command),
        cwd=template.cwd,
        checkout=(
            protocol.Checkout(repository=template.checkout[0], commit=template.checkout[1])
            if template.checkout is not None
            else None
        ),
        env={**template.env, **create.extra_env},
        ports=ports,
        health_check=(
            protocol.decode(protocol.HealthCheck, template.health_check)
            if template.health_check is not None
            else None
        ),
        restart=protocol.decode(protocol.Restart, template.restart),
        stop_grace_s=template.stop_grace_s,
        timeout_s=template.timeout_s,
    )


def _secret_refs(template: Template) -> dict[str, list[dict[str, str]]]:
    """The Secrets the hub resolves into env for this allocation, in order."""
    if not template.secrets:
        return {}
    return {"secrets": [{"secret": s.secret, "prefix": s.prefix} for s in template.secrets]}


def _current(allocation: allocations.Allocation, snapshot: cluster.Snapshot) -> rollout.Current:
    report = allocation.report or {}
    url = url_of(allocation, snapshot.addresses)
    return rollout.Current(
        id=allocation.id,
        component=allocation.component,
        replica=allocation.replica,
        spec_hash=allocation.spec_hash,
        state=report.get("state"),
        healthy=report.get("healthy"),
        url=url,
        reason=report.get("reason"),
        message=report.get("message"),
        restarts=int(report.get("restarts", 0)),
        node=allocation.node,
        node_state=snapshot.node_state(allocation.node),
    )


def url_of(allocation: allocations.Allocation, addresses: Mapping[str, str]) -> str | None:
    """`http://<node address>:<first port>` of a replica, from its report (the ports as
    the node resolved them) and its node's address (`addresses`: node name → address);
    None while the node or the ports are unknown."""
    address = addresses.get(allocation.node)
    ports = (allocation.report or {}).get("ports") or {}
    if address is None or not ports:
        return None
    return f"http://{address}:{next(iter(ports.values()))}"


def _replicas(held: list[allocations.Allocation]) -> list[allocations.Allocation]:
    """The tenant's replicas: its allocations less those of schedule runs."""
    return [a for a in held if a.schedule_run is None]
