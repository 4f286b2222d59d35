"""Which schedules exist, and what a run of each would run: read from the store.

Called by the schedule controller and the schedules API. Two kinds of schedule
share one key space:

- a `Schedule` resource, keyed by its name (`acme-nightly`);
- an item of a Tenant's `spec.schedules`, keyed `<tenant>/<name>` (`acme/nightly`).
  Resource names cannot hold `/`, so the two never collide — not even with the
  `<tenant>-<name>` Schedules a provisioning run creates.

A run runs the tenant's stack's component named by the schedule, expanded for the
tenant as the tenant controller expands it (env, overrides, release pins). It must be
a `job` component the nodes runtime can run; `resolve_job` says why not otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from armillary.control import firing, instances
from armillary.resources.schedule import Schedule, ScheduleTiming
from armillary.resources.stack import Stack
from armillary.resources.tenant import Tenant
from armillary.runtime.instance import Template
from armillary.store import repository, schedule_runs
from armillary.store.database import Tx


def inline_key(tenant: str, name: str) -> str:
    """The key of a tenant's inline schedule: `<tenant>/<name>`."""
    return f"{tenant}/{name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One schedule, wherever it is declared."""

    key: str
    tenant: str
    component: str
    timing: firing.Timing
    owner_uid: str  # the Schedule's uid, or the Tenant's
    created_at: dt.datetime | None  # the Schedule's; None for an inline schedule
    resource: repository.Stored | None  # the Schedule resource, where status is written


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """What a run of the schedule would run, or why it cannot run now."""

    template: Template | None
    reason: str = ""  # TenantNotFound | StackNotFound | ComponentNotFound | NotAJob | CannotRun
    message: str = ""

    @property
    def blocked(self) -> tuple[str, str] | None:
        return None if self.template is not None else (self.reason, self.message)


async def resolve(conn: Tx, key: str) -> Target | None:
    """The schedule `key` names, or None if it does not exist (any more)."""
    if "/" in key:
        tenant_name, _, name = key.partition("/")
        stored = await repository.get(conn, "Tenant", tenant_name)
        if stored is None:
            return None
        tenant = Tenant.model_validate(stored.document())
        item = next((s for s in tenant.spec.schedules if s.name == name), None)
        if item is None:
            return None
        return _target(key, tenant_name, item, owner=stored, resource=None)
    stored = await repository.get(conn, "Schedule", key)
    if stored is None:
        return None
    spec = Schedule.model_validate(stored.document()).spec
    return _target(key, spec.tenant, spec, owner=stored, resource=stored)


def _target(
    key: str,
    tenant: str,
    spec: ScheduleTiming,
    *,
    owner: repository.Stored,
    resource: repository.Stored | None,
) -> Target:
    return Target(
        key=key,
        tenant=tenant,
        component=spec.component,
        timing=firing.Timing(
            cron=spec.cron,
            time_zone=spec.time_zone,
            concurrency_policy=spec.concurrency_policy,
            starting_deadline_s=spec.starting_deadline_s,
            history_limit=spec.history_limit,
            suspend=spec.suspend,
        ),
        owner_uid=owner.uid,
        created_at=resource.created_at if resource is not None else None,
        resource=resource,
    )


async def resolve_job(conn: Tx, target: Target, *, on_cluster: bool = False) -> Job:
    """The job a run of `target` runs: its tenant's stack's component, expanded for
    the tenant. It must be a `job` component that can run on the nodes runtime — or,
    for a tenant on a Kubernetes cluster (`on_cluster`), one with an image."""
    stored = await repository.get(conn, "Tenant", target.tenant)
    if stored is None:
        return Job(
            template=None,
            reason="TenantNotFound",
            message=f"tenant {target.tenant!r} does not exist",
        )
    tenant = Tenant.model_validate(stored.document())
    stack_row = await repository.get(conn, "Stack", tenant.spec.stack)
    if stack_row is None:
        message = f"stack {tenant.spec.stack!r} of tenant {target.tenant!r} does not exist"
        return Job(template=None, reason="StackNotFound", message=message)
    stack = Stack.model_validate(stack_row.document())
    instance = await instances.read(conn, tenant, stack)
    template = next((t for t in instance.templates if t.component == target.component), None)
    where = f"component {target.component!r} of stack {stack.metadata.name!r}"
    if template is None:
        names = ", ".join(t.component for t in instance.templates) or "none"
        message = f"stack {stack.metadata.name!r} has no component {target.component!r} ({names})"
        return Job(template=None, reason="ComponentNotFound", message=message)
    if template.type != "job":
        message = f"{where} is a {template.type}; a schedule runs a component of type job"
        return Job(template=None, reason="NotAJob", message=message)
    if on_cluster and template.image is not None and template.image_problem:
        return Job(template=dataclasses.replace(template, problem=None, image_problem=False))
    if template.problem is not None:
        return Job(template=None, reason="CannotRun", message=f"{where}: {template.problem}")
    return Job(template=template)


async def keys_of_tenant(conn: Tx, tenant: str) -> set[str]:
    """Every schedule that runs in `tenant`: inline, Schedule resources, and any the
    store still holds state for (a deleted tenant's)."""
    keys = {s.schedule for s in await schedule_runs.list_states(conn, tenant=tenant)}
    stored = await repository.get(conn, "Tenant", tenant)
    if stored is not None:
        keys |= {inline_key(tenant, str(s["name"])) for s in inline_items(stored)}
    for schedule in await repository.list_kind(conn, "Schedule"):
        if schedule.spec.get("tenant") == tenant:
            keys.add(schedule.name)
    return keys


def inline_items(stored: repository.Stored) -> list[dict[str, object]]:
    items = stored.spec.get("schedules") or []
    return [s for s in items if isinstance(s, dict) and s.get("name")]
