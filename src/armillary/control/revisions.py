"""Rollout revisions of one tenant's component: what to run, and how a change ended.

Pure. The tenant controller calls `choose` before each convergence step and `judge`
after it. Every change of a service component's template is a revision; the newest
one is what the tenant asked for, but not always what runs:

- a revision that failed (its new replicas crash-loop, fail, turn unhealthy, or are
  not all ready within the progress deadline) is rolled back: the newest revision
  that completed runs again, until the tenant asks for something else;
- a new *release* of a component (a change of `component@version`) starts in at most
  `max_parallel_tenants` tenants at a time, and in none once it has failed in one:
  such a change is `held`, and the tenant keeps running what it ran.

A first revision (nothing completed before it) is never rolled back: there is
nothing to go back to, so its problems show in status and it keeps trying.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from armillary.runtime.instance import Template
from armillary.runtime.rollout import Observed


@dataclass(frozen=True, slots=True, kw_only=True)
class Revision:
    number: int
    template: Template
    template_hash: str
    release: str | None
    state: str  # progressing | complete | failed | superseded
    reason: str | None
    started_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Wave:
    """Other tenants and the release a change would start (read only when it matters)."""

    progressing: tuple[str, ...] = ()  # tenants rolling this release out now
    failed: tuple[tuple[str, str], ...] = ()  # (tenant, reason) where it failed


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    run: Template  # what the replicas converge on now
    record: bool = False  # start a new revision of the desired template
    held: str | None = None  # why the desired change waits
    rolled_back: Revision | None = None  # the failed revision that was undone


def stable(history: Sequence[Revision]) -> Revision | None:
    """The newest revision that completed."""
    return next((r for r in reversed(history) if r.state == "complete"), None)


def needs_wave(desired: Template, history: Sequence[Revision]) -> bool:
    """Whether `choose` must know about other tenants: a new release over a stable one."""
    latest = history[-1] if history else None
    return (
        latest is not None
        and latest.template_hash != desired.spec_hash()
        and desired.release is not None
        and desired.release != latest.release
        and stable(history) is not None
    )


def choose(desired: Template, history: Sequence[Revision], wave: Wave | None = None) -> Choice:
    """What to run for one component, and whether the desired template is a new revision."""
    if desired.type != "service" or desired.problem is not None:
        return Choice(run=desired)  # jobs run once; a template with a problem never runs
    latest = history[-1] if history else None
    good = stable(history)
    if latest is None:
        return Choice(run=desired, record=True)
    if latest.template_hash == desired.spec_hash():
        if latest.state == "failed" and good is not None and desired.policy.auto_rollback:
            return Choice(run=good.template, rolled_back=latest)
        return Choice(run=desired)
    if needs_wave(desired, history):
        held = _held(desired, wave or Wave())
        if held is not None:
            current = good.template if latest.state == "failed" and good else latest.template
            return Choice(run=current, held=held)
    return Choice(run=desired, record=True)


def _held(desired: Template, wave: Wave) -> str | None:
    if wave.failed:
        tenant, reason = wave.failed[0]
        return f"{desired.release} failed in tenant {tenant} ({reason}); its rollout is stopped"
    limit = desired.policy.max_parallel_tenants
    if len(wave.progressing) >= limit:
        busy = ", ".join(sorted(wave.progressing))
        return f"waiting: {desired.release} is rolling out in {busy} (max_parallel_tenants={limit})"
    return None


def judge(
    revision: Revision, observed: Observed, *, can_fail: bool, now: dt.datetime
) -> tuple[str, str] | None:
    """(state, reason) once a progressing revision has ended, else None.

    Failure is judged on the revision's own replicas only, never on those it replaces,
    and only when `can_fail` (there is a completed revision to go back to): a replica
    that crash-loops or failed ends it at once; one failing its health check, once the
    revision is `unhealthy_grace_s` old; any, at the progress deadline.
    """
    if revision.state != "progressing":
        return None
    age_s = (now - revision.started_at).total_seconds()
    policy = revision.template.policy
    unhealthy = observed.unhealthy if age_s >= policy.unhealthy_grace_s else ()
    failing = (*observed.failing, *unhealthy) if can_fail else ()
    complete = (
        observed.updated >= observed.desired
        and observed.ready >= observed.desired
        and observed.total == observed.desired
    )
    if complete and not failing and not observed.unhealthy:
        return "complete", f"{observed.ready}/{observed.desired} replicas ready"
    if failing:
        return "failed", "; ".join(failing)
    if not can_fail:
        return None
    if age_s > policy.progress_deadline_s:
        return "failed", (
            f"progress deadline exceeded: {observed.ready}/{observed.desired} replicas "
            f"ready after {policy.progress_deadline_s:g}s"
        )
    return None


def undo_target(history: Sequence[Revision], *, to_revision: int | None = None) -> Revision:
    """The revision `rollout undo` goes back to: `to_revision`, or else the newest one
    before the latest that completed on another release. Raises `ValueError` saying why
    there is none."""
    if not history:
        raise ValueError("no revisions recorded yet")
    latest = history[-1]
    if to_revision is not None:
        found = next((r for r in history if r.number == to_revision), None)
        if found is None:
            kept = ", ".join(str(r.number) for r in history)
            raise ValueError(f"no revision {to_revision}; the history keeps {kept}")
    else:
        found = next(
            (
                r
                for r in reversed(history[:-1])
                if r.state == "complete" and r.release != latest.release
            ),
            None,
        )
        if found is None:
            raise ValueError(f"no completed revision before revision {latest.number} to go back to")
    if found.release is None:
        raise ValueError(
            f"revision {found.number} is not a release (a change of the stack's command or "
            "env); change the stack file to go back to it"
        )
    return found
