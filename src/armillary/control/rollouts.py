"""Rollout bookkeeping for the tenant controller: revisions in, what to run out.

`Rollouts.choose(tenant, instance)` reads the tenant's revisions (and, for a new
release over a stable one, the other tenants' progress on that release), records a
revision for each changed service component, and returns the instance to converge
on — the desired templates, except where a failed revision is rolled back or a
release's wave holds the change (see `control.revisions`). `judge` then closes the
revisions that ended. Both are one write transaction each, so a server killed
between them loses nothing: the next reconcile re-reads and carries on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from armillary import timestamps
from armillary.control import revisions, tenant_status
from armillary.runtime import nodes as nodes_runtime
from armillary.runtime.instance import Instance, Template, template_from_json, template_to_json
from armillary.store import rollouts
from armillary.store.database import Database, Tx


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    """One component's choice, with its revision history as it stands after it."""

    choice: revisions.Choice
    history: tuple[revisions.Revision, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    instance: Instance  # what to converge on
    components: dict[str, Decided]


class Rollouts:
    """Revisions of every tenant's components, in the store."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def choose(self, tenant: str, desired: Instance, *, now: dt.datetime) -> Plan:
        decided: dict[str, Decided] = {}
        async with self._db.write() as conn:
            stored = await rollouts.history(conn, tenant)
            for template in desired.templates:
                history = [revision(r) for r in stored if r.component == template.component]
                wave = None
                if revisions.needs_wave(template, history):
                    assert template.release is not None
                    await rollouts.lock_release(conn, template.component, template.release)
                    wave = await _wave(conn, tenant, template)
                choice = revisions.choose(template, history, wave)
                if choice.record:
                    history.append(await _record(conn, tenant, template, history, now=now))
                decided[template.component] = Decided(choice=choice, history=tuple(history))
        run = tuple(d.choice.run for d in decided.values())
        return Plan(instance=Instance(tenant=tenant, templates=run), components=decided)

    async def judge(
        self, tenant: str, plan: Plan, outcome: nodes_runtime.Outcome, *, now: dt.datetime
    ) -> bool:
        """Close the revisions that ended; True if one failed (roll back at once)."""
        failed = False
        async with self._db.write() as conn:
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
                    await rollouts.finish(
                        conn, _row(tenant, latest), state=state, reason=reason, now=now
                    )
                    failed = failed or state == "failed"
        return failed

    async def forget(self, tenant: str) -> None:
        async with self._db.write() as conn:
            await rollouts.remove_tenant(conn, tenant)


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


async def _wave(conn: Tx, tenant: str, template: Template) -> revisions.Wave:
    assert template.release is not None
    seen = await rollouts.for_release(
        conn, template.component, template.release, states=("progressing", "failed")
    )
    others = [r for r in seen if r.tenant != tenant]
    return revisions.Wave(
        progressing=tuple(sorted({r.tenant for r in others if r.state == "progressing"})),
        failed=tuple((r.tenant, r.reason or "failed") for r in others if r.state == "failed"),
    )


async def _record(
    conn: Tx,
    tenant: str,
    template: Template,
    history: list[revisions.Revision],
    *,
    now: dt.datetime,
) -> revisions.Revision:
    latest = history[-1] if history else None
    if latest is not None and latest.state == "progressing":
        await rollouts.finish(
            conn, _row(tenant, latest), state="superseded", reason="a newer change", now=now
        )
        history[-1] = dataclasses.replace(latest, state="superseded")
    revision = revisions.Revision(
        number=latest.number + 1 if latest is not None else 1,
        template=template,
        template_hash=template.spec_hash(),
        release=template.release,
        state="progressing",
        reason=None,
        started_at=now,
    )
    await rollouts.add(conn, _row(tenant, revision))
    return revision


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
