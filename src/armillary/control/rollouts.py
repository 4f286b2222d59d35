"""Rollout bookkeeping for the tenant controller: revisions in, what to run out.

`choose(tenant, desired, known)` decides, from the tenant's revisions and (for a new
release over a stable one) the other tenants' progress on that release, which
template of each component to converge on — the desired one, except where a failed
revision is rolled back or a release's wave holds the change (see
`control.revisions`) — and which revisions that starts or supersedes. `judge` then
decides which revisions the step's outcome ended. Both are pure and return the
`store.rollouts.Changes` to write.

`Rollouts.choose` is the store's side of the first: one read of what the decision
needs (`store.rollouts.read`), the pure decision, one write (`store.rollouts.save`),
in one transaction, so the wave read and the new revision are one decision. (It
looks first in a read transaction: a step that starts or ends nothing, as most do,
never takes the write lock.) The
tenant controller writes `judge`'s changes with the tenant's status, in one more. A
server killed between them loses nothing: the next reconcile re-reads and carries on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from armillary import timestamps
from armillary.control import revisions, tenant_status
from armillary.runtime.base import Outcome
from armillary.runtime.instance import Instance, Template, template_from_json, template_to_json
from armillary.store import rollouts
from armillary.store.database import Database


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    """One component's choice, with its revision history as it stands after it."""

    choice: revisions.Choice
    history: tuple[revisions.Revision, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    instance: Instance  # what to converge on
    components: dict[str, Decided]
    changes: rollouts.Changes  # the revisions the choice starts or supersedes


class Rollouts:
    """Revisions of every tenant's components, in the store."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def choose(self, tenant: str, desired: Instance, *, now: dt.datetime) -> Plan:
        """Read once, decide, write once (see the module's docstring)."""
        releases = {
            t.component: t.release
            for t in desired.templates
            if t.type == "service" and t.release is not None
        }
        # Decided on a read first: most steps start or end no revision and need not
        # queue for the write lock. One that does decides again in its transaction.
        async with self._db.read() as conn:
            known = await rollouts.read(conn, tenant, releases=releases, lock=False)
            plan = choose(tenant, desired, known, now=now)
        if not plan.changes:
            return plan
        async with self._db.write() as conn:
            known = await rollouts.read(conn, tenant, releases=releases)
            plan = choose(tenant, desired, known, now=now)
            if plan.changes:
                await rollouts.save(conn, plan.changes, now=now)
        return plan

    async def forget(self, tenant: str) -> None:
        async with self._db.write() as conn:
            await rollouts.remove_tenant(conn, tenant)


def choose(tenant: str, desired: Instance, known: rollouts.Known, *, now: dt.datetime) -> Plan:
    """What each component runs, and the revisions that starts or supersedes. Pure."""
    decided: dict[str, Decided] = {}
    finished: list[rollouts.Finished] = []
    started: list[rollouts.Revision] = []
    for template in desired.templates:
        history = [revision(r) for r in known.history if r.component == template.component]
        wave = None
        if revisions.needs_wave(template, history):
            wave = _wave(tenant, template, known.others)
        choice = revisions.choose(template, history, wave)
        if choice.record:
            latest = history[-1] if history else None
            if latest is not None and latest.state == "progressing":
                finished.append(
                    rollouts.Finished(
                        revision=_row(tenant, latest), state="superseded", reason="a newer change"
                    )
                )
                history[-1] = dataclasses.replace(latest, state="superseded")
            new = _new_revision(template, latest, now=now)
            started.append(_row(tenant, new))
            history.append(new)
        decided[template.component] = Decided(choice=choice, history=tuple(history))
    run = tuple(d.choice.run for d in decided.values())
    return Plan(
        instance=Instance(tenant=tenant, templates=run),
        components=decided,
        changes=rollouts.Changes(finished=tuple(finished), started=tuple(started)),
    )


def judge(tenant: str, plan: Plan, outcome: Outcome, *, now: dt.datetime) -> rollouts.Changes:
    """The revisions the step's outcome ended (a failed one is rolled back at once). Pure."""
    finished: list[rollouts.Finished] = []
    for component, decided in plan.components.items():
        latest = decided.history[-1] if decided.history else None
        observed = outcome.step.components.get(component)
        if (
            latest is None
            or observed is None
            or latest.template_hash != decided.choice.run.spec_hash()
        ):
            continue
        good = revisions.stable(decided.history)
        can_fail = good is not None and latest.template.policy.auto_rollback
        verdict = revisions.judge(latest, observed, can_fail=can_fail, now=now)
        if verdict is not None:
            state, reason = verdict
            finished.append(
                rollouts.Finished(revision=_row(tenant, latest), state=state, reason=reason)
            )
    return rollouts.Changes(finished=tuple(finished))


def failed(changes: rollouts.Changes) -> bool:
    """Whether `changes` fail a revision (the tenant is reconciled again at once)."""
    return any(f.state == "failed" for f in changes.finished)


def status(plan: Plan) -> tenant_status.Revisions:
    """What the plan decided, as the tenant's status shows it."""
    summary: dict[str, Any] = {}
    problems: list[str] = []
    held: list[str] = []
    for component, decided in plan.components.items():
        if not decided.history:
            continue
        latest = decided.history[-1]
        entry: dict[str, Any] = {"revision": latest.number, "state": latest.state}
        if latest.release:
            entry["release"] = latest.release
        undone = decided.choice.rolled_back
        if undone is not None:
            back = revisions.stable(decided.history)
            to = f"revision {back.number}" if back else "the previous revision"
            if back is not None and back.release:
                to += f" ({back.release})"
            entry["rolledBackTo"] = back.number if back else None
            entry["message"] = (
                f"revision {undone.number} failed: {undone.reason}; rolled back to {to}"
            )
            problems.append(f"{component}: rollout {entry['message']}")
        if decided.choice.held is not None:
            entry["held"] = decided.choice.held
            held.append(f"{component}: {decided.choice.held}")
        summary[component] = entry
    return tenant_status.Revisions(summary=summary, problems=tuple(problems), held=tuple(held))


def _wave(tenant: str, template: Template, others: tuple[rollouts.Revision, ...]) -> revisions.Wave:
    seen = [
        r
        for r in others
        if r.tenant != tenant
        and r.component == template.component
        and r.release == template.release
    ]
    seen.sort(key=lambda r: r.started_at)
    return revisions.Wave(
        progressing=tuple(sorted({r.tenant for r in seen if r.state == "progressing"})),
        failed=tuple((r.tenant, r.reason or "failed") for r in seen if r.state == "failed"),
    )


def _new_revision(
    template: Template, latest: revisions.Revision | None, *, now: dt.datetime
) -> revisions.Revision:
    return revisions.Revision(
        number=latest.number + 1 if latest is not None else 1,
        template=template,
        template_hash=template.spec_hash(),
        release=template.release,
        state="progressing",
        reason=None,
        started_at=now,
    )


def revision(row: rollouts.Revision) -> revisions.Revision:
    """A stored revision as `control.revisions` reads it."""
    return revisions.Revision(
        number=row.revision,
        template=template_from_json(row.template),
        template_hash=row.template_hash,
        release=row.release,
        state=row.state,
        reason=row.reason,
        started_at=timestamps.utc(row.started_at),  # SQLite hands back naive UTC
    )


def _row(tenant: str, revision: revisions.Revision) -> rollouts.Revision:
    return rollouts.Revision(
        tenant=tenant,
        component=revision.template.component,
        revision=revision.number,
        template_hash=revision.template_hash,
        template=template_to_json(revision.template),
        release=revision.release,
        state=revision.state,
        reason=revision.reason,
        started_at=revision.started_at,
        finished_at=None,
    )
