"""The tenant controller: keeps each tenant's replicas converged on its stack.

`reconcile(tenant)` reads the Tenant, its Stack and the Releases they pin (one read
transaction) and expands them into templates; `control.rollouts` decides which
revision of each component runs (rolling back a failed change, holding a release's
wave) on one read of the tenant's revisions and writes what it started in the same
transaction; the runtime takes one step toward that; then the revisions the step
ended and the tenant's status (`control.tenant_status`: counts per component,
revisions, the conditions Ready, Progressing and Degraded with the reason in words)
are written together, once, and only if something changed. A deleted tenant has its
replicas removed. Every event (the tenant's spec, its stack, a release, its
allocations' reports, a node) only brings the key back here; the status written here
does not (the driver watches specs only).

The runtime is chosen per tenant (`control.runtimes`: its `spec.runtime`, else its
Org's, else nodes) and named in `status.runtime`. When the choice changes, the runtime
the status names removes the tenant's replicas first (`converge(tenant, None)` there,
step by step, the status saying so), then the new one creates them. A runtime that
cannot act for the tenant (its Cluster missing or unreachable, its stack not runnable
there) is a problem in the tenant's status, with the Cluster and the cause.

A node's change (joined, left, cordoned, drained) brings back the tenants with replicas on it
and those the last step left waiting for a node; a revision of a release that ends,
the tenants the last step saw holding a change behind that release's wave. Both sets
are kept from what each reconcile saw, in memory: a fleet of 2,000 nodes saying hello
would otherwise read every tenant 2,000 times. The first resync at start reconciles
every tenant and fills them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from armillary.control import conditions, instances, rollouts, tenant_status
from armillary.control.driver import Result
from armillary.control.runtimes import NODES, Chosen, Runtimes
from armillary.resources.stack import Stack
from armillary.resources.tenant import Tenant
from armillary.runtime.base import Problem, Runtime
from armillary.runtime.kubernetes.runtime import WORKLOAD
from armillary.store import allocations, repository
from armillary.store import rollouts as rollout_store
from armillary.store.database import Database
from armillary.store.feed import Change

log = logging.getLogger(__name__)

PROGRESS_RECHECK_S = 5.0
MOVING_RECHECK_S = 1.0
PROBLEM_RECHECK_S = 10.0  # a cluster that cannot be reached is tried again
ROLLBACK_NOW_S = 0.05
NOTHING_ENDED = rollout_store.Changes()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TenantController:
    name = "tenants"

    def __init__(
        self,
        db: Database,
        runtime: Runtime | Runtimes,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._db = db
        self._runtimes = runtime if isinstance(runtime, Runtimes) else Runtimes(db, runtime)
        self._clock = clock
        self._rollouts = rollouts.Rollouts(db)
        # What the last reconcile of each tenant saw, so a node or a revision that
        # ends wakes only the tenants it may concern, not a read of every tenant:
        self._holding: set[str] = set()  # a change held behind a release's wave
        self._waiting: set[str] = set()  # replicas that no node took

    async def keys_for(self, event: Change) -> set[str]:
        if event.kind == "Tenant":
            return {event.name}
        if event.kind in ("Allocation", WORKLOAD) and event.tenant:
            return {event.tenant}
        if event.kind == "Org":
            async with self._db.read() as conn:
                tenants = await repository.list_kind(conn, "Tenant")
            return {t.name for t in tenants if t.spec.get("org") == event.name}
        if event.kind == "Cluster":
            return await self.all_keys()
        if event.kind == "Stack":
            async with self._db.read() as conn:
                tenants = await repository.list_kind(conn, "Tenant")
            return {t.name for t in tenants if t.spec.get("stack") == event.name}
        if event.kind == "Node":  # its replicas' tenants, and those waiting for a node
            async with self._db.read() as conn:
                on_it = await allocations.tenants(conn, node=event.name)
            return on_it | self._waiting
        if event.kind == "Release":
            return await self.all_keys()
        if event.kind == "Secret":
            async with self._db.read() as conn:
                tenants = await repository.list_kind(conn, "Tenant")
            return {t.name for t in tenants if event.name in _secret_names(t)}
        if event.kind == "Rollout":  # a revision ended: changes held behind it may start
            return set(self._holding) if event.name else set()  # (only a release's wave)
        return set()

    async def all_keys(self) -> set[str]:
        async with self._db.read() as conn:
            return await repository.names(conn, "Tenant") | await allocations.tenants(conn)

    async def reconcile(self, key: str) -> Result:
        now = self._clock()
        async with self._db.read() as conn:
            stored = await repository.get(conn, "Tenant", key)
            stack_row = None
            if stored is not None:
                stack_row = await repository.get(conn, "Stack", str(stored.spec.get("stack")))
            if stored is not None and stack_row is not None:
                tenant = Tenant.model_validate(stored.document())
                stack = Stack.model_validate(stack_row.document())
                instance = await instances.read(conn, tenant, stack)
        if stored is None or stack_row is None:
            self._holding.discard(key)
            self._waiting.discard(key)
        if stored is None:
            return await self._removed(key, now=now)
        if stack_row is None:
            missing = tenant_status.without_stack(
                generation=stored.generation, stack=str(stored.spec.get("stack"))
            )
            document = {**missing.document(now=now), **_runtime_of(stored)}
            await self._write_status(key, stored, document, now=now)
            return Result()
        async with self._db.read() as conn:
            chosen = await self._runtimes.choose(conn, tenant)
            # A tenant reconciled before runtimes were named ran on nodes.
            before = str(stored.status.get("runtime") or (NODES if stored.status else chosen.name))
            previous = None
            if before != chosen.name:
                previous = await self._runtimes.by_name(conn, before)
        if previous is not None:  # moving: the old runtime removes first
            moved = await self._move_away(key, stored, previous, chosen.name, now=now)
            if moved is not None:
                return moved
        if chosen.runtime is None:
            assert chosen.problem is not None
            return await self._blocked(key, stored, chosen.name, chosen.problem, now=now)
        instance = chosen.runtime.prepare(instance)
        plan = await self._rollouts.choose(key, instance, now=now)
        outcome = await chosen.runtime.converge(key, plan.instance, now=now)
        if outcome.problem is not None:
            return await self._blocked(key, stored, chosen.name, outcome.problem, now=now)
        ended = rollouts.judge(key, plan, outcome, now=now)
        status = tenant_status.build(
            generation=stored.generation,
            stack_generation=stack_row.generation,
            observed=outcome.step.components,
            idle=outcome.idle,
            unplaced={c: u.reason for c, u in outcome.unplaced.items()},
            unplaced_replicas={c: u.replicas for c, u in outcome.unplaced.items()},
            revisions=rollouts.status(plan),
        )
        document = {**status.document(now=now), "runtime": chosen.name}
        _note(self._holding, key, _holds(document))
        _note(self._waiting, key, bool(outcome.unplaced))
        await self._write_status(key, stored, document, now=now, ended=ended)
        if rollouts.failed(ended):  # roll back at once
            return Result(requeue_after_s=ROLLBACK_NOW_S)
        return Result(requeue_after_s=PROGRESS_RECHECK_S if status.progressing.value else None)

    async def _removed(self, key: str, *, now: dt.datetime) -> Result:
        """A deleted tenant: every runtime removes what it holds of it."""
        async with self._db.read() as conn:
            everywhere = await self._runtimes.every(conn)
        idle, blocked = True, False
        for chosen in everywhere:
            if chosen.runtime is None:
                continue
            outcome = await chosen.runtime.converge(key, None, now=now)
            if outcome.problem is not None:  # what it holds there is removed once it answers
                log.warning("deleted tenant %s: %s", key, outcome.problem.message)
                blocked = True
                continue
            idle = idle and outcome.idle
        if idle and not blocked:
            await self._rollouts.forget(key)
            return Result()
        return Result(requeue_after_s=PROBLEM_RECHECK_S if idle else 1.0)

    async def _move_away(
        self,
        key: str,
        stored: repository.Stored,
        previous: Chosen,
        to: str,
        *,
        now: dt.datetime,
    ) -> Result | None:
        """One step of removing the tenant from the runtime it ran on; None once gone."""
        problem = previous.problem
        if previous.runtime is not None:
            done = await previous.runtime.converge(key, None, now=now)
            if done.idle:
                return None
            problem = done.problem
        what = previous.name
        if problem is not None:
            message = f"moving from {what} to {to}: cannot remove from {what}: {problem.message}"
            moving = tenant_status.moving(
                generation=stored.generation, message=message, problem=problem.reason
            )
            recheck = PROBLEM_RECHECK_S
        else:
            message = f"moving from {what} to {to}: removing the replicas on {what}"
            moving = tenant_status.moving(generation=stored.generation, message=message)
            recheck = MOVING_RECHECK_S
        document = {**stored.status, **moving.document(now=now), "runtime": what}
        await self._write_status(key, stored, document, now=now)
        return Result(requeue_after_s=recheck)

    async def _blocked(
        self,
        key: str,
        stored: repository.Stored,
        runtime: str,
        problem: Problem,
        *,
        now: dt.datetime,
    ) -> Result:
        blocked = tenant_status.blocked(
            generation=stored.generation, reason=problem.reason, message=problem.message
        )
        document = {**stored.status, **blocked.document(now=now), "runtime": runtime}
        await self._write_status(key, stored, document, now=now)
        return Result(requeue_after_s=PROBLEM_RECHECK_S)

    async def give_up(self, key: str, reason: str) -> None:
        """Say in the tenant's status that its reconcile failed for good, and why; its
        counts are kept as they were last seen."""
        async with self._db.read() as conn:
            stored = await repository.get(conn, "Tenant", key)
        if stored is None:
            return
        now = self._clock()
        failed = tenant_status.failed(generation=stored.generation, reason=reason)
        await self._write_status(
            key, stored, {**stored.status, **failed.document(now=now)}, now=now
        )

    async def _write_status(
        self,
        key: str,
        stored: repository.Stored,
        status: dict[str, Any],
        *,
        now: dt.datetime,
        ended: rollout_store.Changes = NOTHING_ENDED,
    ) -> None:
        """One write: the revisions the step ended (as of `now`, when the step
        observed their end), and the status if it changed."""
        status = conditions.keep_transition_times(stored.status, status)
        if status == stored.status and not ended:
            return
        async with self._db.write() as conn:
            if ended:
                await rollout_store.save(conn, ended, now=now)
            if status != stored.status:
                await repository.write_status(
                    conn,
                    kind="Tenant",
                    name=key,
                    status=status,
                    expected_version=None,
                    now=now,
                )


def _runtime_of(stored: repository.Stored) -> dict[str, Any]:
    runtime = stored.status.get("runtime")
    return {"runtime": runtime} if runtime else {}


def _secret_names(tenant: repository.Stored) -> set[str]:
    """The Secrets a stored Tenant uses (their versions are part of its replicas' hashes)."""
    return {str(use["name"]) for use in tenant.spec.get("secrets", [])}


def _note(tenants: set[str], key: str, member: bool) -> None:
    if member:
        tenants.add(key)
    else:
        tenants.discard(key)


def _holds(status: dict[str, Any]) -> bool:
    return any("held" in entry for entry in status.get("rollouts", {}).values())
