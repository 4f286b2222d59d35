"""The tenant controller: keeps each tenant's replicas converged on its stack.

`reconcile(tenant)` re-reads the Tenant, its Stack and the Releases they pin,
expands them into templates, lets `control.rollouts` decide which revision of each
component runs (rolling back a failed change, holding a release's wave), asks the
runtime for one step toward that, closes the revisions that ended, and writes the
tenant's status: counts per component, revisions, and the conditions Ready,
Progressing and Degraded with the reason in words. A deleted tenant has its replicas
removed. Every event (the tenant, its stack, a release, its allocations' reports, a
node) only brings the key back here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from armillary.control import conditions, instances, rollouts
from armillary.control.driver import Result
from armillary.resources.stack import Stack
from armillary.resources.tenant import Tenant
from armillary.runtime import nodes as nodes_runtime
from armillary.store import allocations, repository
from armillary.store.database import Database
from armillary.store.feed import Change

PROGRESS_RECHECK_S = 5.0
ROLLBACK_NOW_S = 0.05


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TenantController:
    name = "tenants"

    def __init__(
        self,
        db: Database,
        runtime: nodes_runtime.NodesRuntime,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._db = db
        self._runtime = runtime
        self._clock = clock
        self._rollouts = rollouts.Rollouts(db)

    async def keys_for(self, event: Change) -> set[str]:
        if event.kind == "Tenant":
            return {event.name}
        if event.kind == "Allocation" and event.tenant:
            return {event.tenant}
        if event.kind == "Stack":
            async with self._db.read() as conn:
                tenants = await repository.list_kind(conn, "Tenant")
            return {t.name for t in tenants if t.spec.get("stack") == event.name}
        if event.kind in ("Node", "Release"):
            return await self.all_keys()
        if event.kind == "Secret":
            async with self._db.read() as conn:
                tenants = await repository.list_kind(conn, "Tenant")
            return {t.name for t in tenants if event.name in _secret_names(t)}
        if event.kind == "Rollout":  # a revision ended: changes held behind it may start
            async with self._db.read() as conn:
                tenants = await repository.list_kind(conn, "Tenant")
            return {t.name for t in tenants if _holds(t.status)}
        return set()

    async def all_keys(self) -> set[str]:
        async with self._db.read() as conn:
            named = {t.name for t in await repository.list_kind(conn, "Tenant")}
            return named | await allocations.tenants(conn)

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
        if stored is None:
            outcome = await self._runtime.converge(key, None, now=now)
            if outcome.step.idle:
                await self._rollouts.forget(key)
                return Result()
            return Result(requeue_after_s=1.0)
        if stack_row is None:
            tenant = Tenant.model_validate(stored.document())
            status = _status_without_stack(stored, tenant, now)
            await self._write_status(key, stored, status)
            return Result()
        plan = await self._rollouts.choose(key, instance, now=now)
        outcome = await self._runtime.converge(key, plan.instance, now=now)
        rolled_back = await self._rollouts.judge(key, plan, outcome, now=now)
        status = _status(stored, stack_row.generation, outcome, now, rollouts.status(plan))
        await self._write_status(key, stored, status)
        if rolled_back:
            return Result(requeue_after_s=ROLLBACK_NOW_S)
        progressing = conditions.is_true(status, "Progressing")
        return Result(requeue_after_s=PROGRESS_RECHECK_S if progressing else None)

    async def _write_status(
        self, key: str, stored: repository.Stored, status: dict[str, Any]
    ) -> None:
        status = conditions.keep_transition_times(stored.status, status)
        if status == stored.status:
            return
        async with self._db.write() as conn:
            await repository.write_status(
                conn,
                kind="Tenant",
                name=key,
                status=status,
                expected_version=None,
                now=self._clock(),
            )


def _status(
    stored: repository.Stored,
    stack_generation: int,
    outcome: nodes_runtime.Outcome,
    now: dt.datetime,
    revisions: tuple[dict[str, Any], list[str], list[str]],
) -> dict[str, Any]:
    components: dict[str, Any] = {}
    desired = ready = updated = 0
    summary, rollout_problems, held = revisions
    problems: list[str] = []
    waiting: list[str] = []
    all_ready = True
    for name, seen in outcome.step.components.items():
        entry: dict[str, Any] = {
            "desired": seen.desired,
            "ready": seen.ready,
            "updated": seen.updated,
        }
        if seen.waiting_for:
            entry["waitingFor"] = list(seen.waiting_for)
            waiting.append(f"{name} waits for {', '.join(seen.waiting_for)}")
        if seen.problems:
            entry["problems"] = list(seen.problems)
            problems.extend(f"{name}: {p}" for p in seen.problems)
        if name in outcome.unplaced:
            entry["unplaced"] = outcome.unplaced[name]
            problems.append(f"{name}: {outcome.unplaced[name]}")
        components[name] = entry
        desired += seen.desired
        ready += min(seen.ready, seen.desired)
        updated += min(seen.updated, seen.desired)
        component_ready = seen.done if seen.job else seen.ready >= seen.desired
        stale = seen.total > seen.desired or seen.updated < seen.desired
        all_ready = all_ready and component_ready and not stale and not seen.problems
    converged = all_ready and outcome.step.idle and not outcome.unplaced
    problems.extend(rollout_problems)  # the tenant may be Ready (on the old revision) and Degraded
    ready_reason = "AllReplicasReady" if converged else ("Degraded" if problems else "Progressing")
    ready_message = (
        f"{ready}/{desired} replicas ready"
        if converged
        else "; ".join(problems or waiting or [f"{ready}/{desired} replicas ready"])
    )
    progressing_reason = "Converged" if converged else ("Stalled" if problems else "RollingOut")
    return {
        "observedGeneration": stored.generation,
        "stackGeneration": stack_generation,
        "replicas": {"desired": desired, "ready": ready, "updated": updated},
        "components": components,
        **({"rollouts": summary} if summary else {}),
        "conditions": [
            conditions.make("Ready", converged, ready_reason, ready_message, now),
            conditions.make(
                "Progressing",
                not converged and not problems,
                "RolloutHeld" if held and converged else progressing_reason,
                "; ".join(held or waiting) or f"{updated}/{desired} replicas updated",
                now,
            ),
            conditions.make(
                "Degraded",
                bool(problems),
                "ReplicasFailing" if problems else "None",
                "; ".join(problems) or "no problems",
                now,
            ),
        ],
    }


def _secret_names(tenant: repository.Stored) -> set[str]:
    """The Secrets a stored Tenant uses (their versions are part of its replicas' hashes)."""
    return {str(use["name"]) for use in tenant.spec.get("secrets", [])}


def _holds(status: dict[str, Any]) -> bool:
    return any("held" in entry for entry in status.get("rollouts", {}).values())


def _status_without_stack(
    stored: repository.Stored, tenant: Tenant, now: dt.datetime
) -> dict[str, Any]:
    message = f"stack {tenant.spec.stack!r} does not exist; apply it (running replicas are kept)"
    return {
        "observedGeneration": stored.generation,
        "conditions": [
            conditions.make("Ready", False, "StackNotFound", message, now),
            conditions.make("Progressing", False, "StackNotFound", message, now),
            conditions.make("Degraded", True, "StackNotFound", message, now),
        ],
    }
