"""The contract every runtime keeps, and what a step of one reports.

A runtime realises one tenant's stack instance somewhere (allocations on node
daemons, objects on a Kubernetes cluster). The controllers know it only through
`Runtime.converge(tenant, instance, now=)`: take one step toward `instance` (apply
what must change, remove what is no longer wanted) and say what each component
looks like now (`Outcome.step.components`, the `rollout.Observed` the rollouts
judge). `prepare(instance)` first makes each template's `problem` this runtime's (an
image is one for nodes, a process for kubernetes), before the rollouts decide.
`instance=None` removes everything the runtime holds for the tenant; a step
that found nothing left to do is `idle`. Safe to repeat: a step decides from what it
sees, never from what it did last.

A runtime that cannot act for a tenant at all (its cluster is unreachable, its
stack cannot be rendered there) says so in `Outcome.problem` instead of raising: the
tenant's status carries it and nothing else is disturbed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

from armillary.runtime import rollout
from armillary.runtime.instance import Instance


@dataclass(frozen=True, slots=True, kw_only=True)
class Unplaced:
    """A component's replicas no node took in this step, and why (the scheduler's
    counts per reason): they stay Pending until a node can take them."""

    reason: str
    replicas: tuple[int, ...]  # their indices, in the order the step tried them


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """Why a runtime could not act for the tenant: `reason` a CamelCase word for the
    condition (ClusterUnreachable, Unrenderable), `message` the cause in words."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    step: rollout.Step
    unplaced: dict[str, Unplaced] = field(default_factory=dict)  # by component
    changed: int = 0  # objects written or removed besides `step.create`/`step.remove`
    problem: Problem | None = None

    @property
    def idle(self) -> bool:
        """Nothing was created, changed or removed in this step."""
        return self.step.idle and not self.changed and self.problem is None


class Runtime(Protocol):
    """Where a tenant's replicas run (see the module's docstring)."""

    @property
    def name(self) -> str:
        """`nodes`, or `kubernetes/<cluster>`: what a tenant's status says it runs on."""
        ...

    def prepare(self, instance: Instance) -> Instance:
        """`instance` with each template's `problem` this runtime's: what it cannot run
        here is not rolled out, and its status says why."""
        ...

    async def converge(
        self, tenant: str, instance: Instance | None, *, now: dt.datetime
    ) -> Outcome: ...
