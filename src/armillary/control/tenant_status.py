"""A tenant's status, from what one reconcile saw. Pure: no store, no clock.

`build` turns the runtime's step (each component's observed replicas, the components
no node takes) and what the rollouts decided into a `TenantStatus`: counts per
component, the revisions, and the conditions Ready, Progressing and Degraded with the
reason in words. `without_stack` says the tenant's Stack is missing; `failed` says a
reconcile cannot go on (a `PermanentError`). The tenant controller writes
`document(now=...)`, where `now` stamps the conditions (a condition whose truth did
not change keeps its time: `conditions.keep_transition_times`).

The tenant is Ready only when every component has all its replicas ready on the
current spec, nothing is left to create or remove, and every replica is placed; it
may be Ready (on the old revision) and Degraded (a rollout rolled back) at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from armillary.control import conditions
from armillary.runtime.rollout import Observed


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    type: str
    value: bool
    reason: str
    message: str

    def document(self, *, now: dt.datetime) -> dict[str, str]:
        return conditions.make(self.type, self.value, self.reason, self.message, now)


@dataclass(frozen=True, slots=True, kw_only=True)
class Component:
    """One component's replicas as status shows them."""

    name: str
    desired: int
    ready: int
    updated: int
    waiting_for: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    unplaced: str | None = None  # why no node takes a replica
    unplaced_replicas: tuple[int, ...] = ()  # the indices of those replicas: Pending

    def document(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"desired": self.desired, "ready": self.ready}
        entry["updated"] = self.updated
        if self.waiting_for:
            entry["waitingFor"] = list(self.waiting_for)
        if self.problems:
            entry["problems"] = list(self.problems)
        if self.unplaced is not None:
            entry["unplaced"] = self.unplaced
        if self.unplaced_replicas:
            entry["unplacedReplicas"] = list(self.unplaced_replicas)
        return entry


@dataclass(frozen=True, slots=True, kw_only=True)
class Replicas:
    desired: int
    ready: int
    updated: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Revisions:
    """What the rollouts decided, as status shows it (see `control.rollouts.summary`)."""

    summary: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # status.rollouts
    problems: tuple[str, ...] = ()  # rolled-back changes: Degraded
    held: tuple[str, ...] = ()  # changes waiting for their release's wave: Progressing


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantStatus:
    observed_generation: int
    ready: Condition
    progressing: Condition
    degraded: Condition
    stack_generation: int | None = None
    replicas: Replicas | None = None  # None when there is nothing to count (no stack)
    components: tuple[Component, ...] = ()
    rollouts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def document(self, *, now: dt.datetime) -> dict[str, Any]:
        """The status as the store keeps it, with conditions stamped `now`."""
        status: dict[str, Any] = {"observedGeneration": self.observed_generation}
        if self.stack_generation is not None:
            status["stackGeneration"] = self.stack_generation
        if self.replicas is not None:
            status["replicas"] = {
                "desired": self.replicas.desired,
                "ready": self.replicas.ready,
                "updated": self.replicas.updated,
            }
            status["components"] = {c.name: c.document() for c in self.components}
        if self.rollouts:
            status["rollouts"] = {k: dict(v) for k, v in self.rollouts.items()}
        status["conditions"] = [
            c.document(now=now) for c in (self.ready, self.progressing, self.degraded)
        ]
        return status


def build(
    *,
    generation: int,
    stack_generation: int,
    observed: Mapping[str, Observed],
    idle: bool,
    unplaced: Mapping[str, str],
    revisions: Revisions,
    unplaced_replicas: Mapping[str, Sequence[int]] | None = None,
) -> TenantStatus:
    """The status after one step: `observed` per component, `idle` when the step had
    nothing to create or remove, `unplaced` the components no node takes, and why,
    `unplaced_replicas` the indices of their replicas it tried (what `ps` lists as
    Pending)."""
    unplaced_replicas = unplaced_replicas or {}
    components: list[Component] = []
    problems: list[str] = []
    waiting: list[str] = []
    desired = ready = updated = 0
    all_ready = True
    for name, seen in observed.items():
        component = Component(
            name=name,
            desired=seen.desired,
            ready=seen.ready,
            updated=seen.updated,
            waiting_for=tuple(seen.waiting_for),
            problems=tuple(seen.problems),
            unplaced=unplaced.get(name),
            unplaced_replicas=tuple(unplaced_replicas.get(name, ())) if name in unplaced else (),
        )
        components.append(component)
        if seen.waiting_for:
            waiting.append(f"{name} waits for {', '.join(seen.waiting_for)}")
        problems.extend(f"{name}: {p}" for p in seen.problems)
        if component.unplaced is not None:
            problems.append(f"{name}: {component.unplaced}")
        desired += seen.desired
        ready += min(seen.ready, seen.desired)
        updated += min(seen.updated, seen.desired)
        component_ready = seen.done if seen.job else seen.ready >= seen.desired
        stale = seen.total > seen.desired or seen.updated < seen.desired
        all_ready = all_ready and component_ready and not stale and not seen.problems
    converged = all_ready and idle and not unplaced
    problems.extend(revisions.problems)
    counted = f"{ready}/{desired} replicas ready"
    if converged:
        ready_reason, progressing_reason, ready_message = "AllReplicasReady", "Converged", counted
    else:
        ready_reason = "Degraded" if problems else "Progressing"
        progressing_reason = "Stalled" if problems else "RollingOut"
        ready_message = "; ".join(problems or waiting or [counted])
    return TenantStatus(
        observed_generation=generation,
        stack_generation=stack_generation,
        replicas=Replicas(desired=desired, ready=ready, updated=updated),
        components=tuple(components),
        rollouts=revisions.summary,
        ready=Condition(type="Ready", value=converged, reason=ready_reason, message=ready_message),
        progressing=Condition(
            type="Progressing",
            value=not converged and not problems,
            reason="RolloutHeld" if revisions.held and converged else progressing_reason,
            message="; ".join(revisions.held or tuple(waiting))
            or f"{updated}/{desired} replicas updated",
        ),
        degraded=Condition(
            type="Degraded",
            value=bool(problems),
            reason="ReplicasFailing" if problems else "None",
            message="; ".join(problems) or "no problems",
        ),
    )


def without_stack(*, generation: int, stack: str) -> TenantStatus:
    """The status of a tenant whose Stack does not exist."""
    message = f"stack {stack!r} does not exist; apply it (running replicas are kept)"
    return _stopped(generation, reason="StackNotFound", message=message)


def failed(*, generation: int, reason: str) -> TenantStatus:
    """The status of a tenant whose reconcile failed for good: retrying will not help
    until the tenant (or what it uses) changes."""
    return _stopped(generation, reason="ReconcileFailed", message=reason)


def blocked(*, generation: int, reason: str, message: str) -> TenantStatus:
    """The status of a tenant its runtime cannot act for (its cluster cannot be
    reached, its stack cannot run there): `reason` names why; counts are kept."""
    return _stopped(generation, reason=reason, message=message)


def moving(*, generation: int, message: str, problem: str | None = None) -> TenantStatus:
    """The status of a tenant moving between runtimes, while the old one removes its
    replicas (`problem`: why it cannot, then Degraded)."""
    return TenantStatus(
        observed_generation=generation,
        ready=Condition(type="Ready", value=False, reason="MovingRuntime", message=message),
        progressing=Condition(
            type="Progressing",
            value=problem is None,
            reason=problem or "MovingRuntime",
            message=message,
        ),
        degraded=Condition(
            type="Degraded",
            value=problem is not None,
            reason=problem or "None",
            message=message if problem else "no problems",
        ),
    )


def _stopped(generation: int, *, reason: str, message: str) -> TenantStatus:
    return TenantStatus(
        observed_generation=generation,
        ready=Condition(type="Ready", value=False, reason=reason, message=message),
        progressing=Condition(type="Progressing", value=False, reason=reason, message=message),
        degraded=Condition(type="Degraded", value=True, reason=reason, message=message),
    )
