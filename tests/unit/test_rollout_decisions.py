"""control.rollouts.choose and judge: one tenant's rollout decision from what one read
returned, and the changes to write. Pure: no store, the clock passed in."""

from __future__ import annotations

import dataclasses
import datetime as dt

from armillary.control import rollouts
from armillary.runtime.instance import Instance, Policy, Template, template_to_json
from armillary.runtime.nodes import Outcome
from armillary.runtime.rollout import Observed, Step
from armillary.store import rollouts as stored

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(minutes=10)


def template(component: str, version: str = "1", *, release: bool = False) -> Template:
    return Template(
        component=component,
        type="service",
        replicas=2,
        command=("python", "app.py"),
        cwd=None,
        env={"V": version},
        ports=(),
        health_check=None,
        restart={},
        stop_grace_s=10,
        timeout_s=None,
        depends_on=(),
        cpu_millicores=100,
        memory_mb=64,
        release=f"{component}@{version}" if release else None,
        policy=Policy(max_parallel_tenants=1),
    )


def row(
    t: Template, number: int, state: str, *, tenant: str = "acme", reason: str | None = None
) -> stored.Revision:
    return stored.Revision(
        tenant=tenant,
        component=t.component,
        revision=number,
        template_hash=t.spec_hash(),
        template=template_to_json(t),
        release=t.release,
        state=state,
        reason=reason,
        started_at=T0,
        finished_at=None,
    )


def known(*history: stored.Revision, others: tuple[stored.Revision, ...] = ()) -> stored.Known:
    return stored.Known(history=history, others=others)


def choose(*templates: Template, read: stored.Known) -> rollouts.Plan:
    return rollouts.choose("acme", Instance(tenant="acme", templates=templates), read, now=NOW)


def test_a_first_template_starts_revision_one_of_each_component() -> None:
    web, worker = template("web"), template("worker")
    plan = choose(web, worker, read=known())
    assert plan.instance.templates == (web, worker)
    assert [(r.component, r.revision, r.state, r.started_at) for r in plan.changes.started] == [
        ("web", 1, "progressing", NOW),
        ("worker", 1, "progressing", NOW),
    ]
    assert plan.changes.finished == ()


def test_nothing_to_write_when_the_template_is_the_running_revision() -> None:
    web = template("web")
    plan = choose(web, read=known(row(web, 3, "complete")))
    assert not plan.changes
    assert plan.instance.templates == (web,)


def test_a_change_supersedes_a_revision_still_in_progress() -> None:
    old, new = template("web", "1"), template("web", "2")
    plan = choose(new, read=known(row(old, 4, "progressing")))
    assert [(f.revision.revision, f.state) for f in plan.changes.finished] == [(4, "superseded")]
    assert [(r.revision, r.template_hash) for r in plan.changes.started] == [(5, new.spec_hash())]
    assert [r.state for r in plan.components["web"].history] == ["superseded", "progressing"]


def test_a_failed_revision_is_rolled_back_without_a_write() -> None:
    good, bad = template("web", "1"), template("web", "2")
    plan = choose(bad, read=known(row(good, 1, "complete"), row(bad, 2, "failed", reason="boom")))
    assert plan.instance.templates == (good,)
    assert not plan.changes
    assert plan.components["web"].choice.rolled_back is not None


def test_a_release_waits_for_its_wave_from_what_the_read_returned() -> None:
    v1, v2 = template("web", "1", release=True), template("web", "2", release=True)
    busy = row(v2, 1, "progressing", tenant="globex")
    plan = choose(v2, read=known(row(v1, 1, "complete"), others=(busy,)))
    assert plan.instance.templates == (v1,)  # held: max_parallel_tenants is 1
    assert not plan.changes
    assert "rolling out in globex" in str(plan.components["web"].choice.held)
    free = choose(v2, read=known(row(v1, 1, "complete")))
    assert [r.release for r in free.changes.started] == ["web@2"]


def test_a_release_that_failed_elsewhere_is_held_with_the_reason() -> None:
    v1, v2 = template("web", "1", release=True), template("web", "2", release=True)
    failed = row(v2, 3, "failed", tenant="globex", reason="crash loop")
    plan = choose(v2, read=known(row(v1, 1, "complete"), others=(failed,)))
    assert plan.components["web"].choice.held == (
        "web@2 failed in tenant globex (crash loop); its rollout is stopped"
    )


def outcome(**observed: Observed) -> Outcome:
    return Outcome(step=Step(components=dict(observed)))


def test_judge_ends_what_the_step_observed_ended() -> None:
    good, new = template("web", "1"), template("web", "2")
    plan = choose(new, read=known(row(good, 1, "complete")))
    done = Observed(desired=2, ready=2, updated=2, total=2)
    ended = rollouts.judge("acme", plan, outcome(web=done), now=NOW)
    assert [(f.revision.revision, f.state) for f in ended.finished] == [(2, "complete")]
    assert not rollouts.failed(ended)
    crashing = dataclasses.replace(done, ready=1, failing=("replica 1 crash-loops",))
    ended = rollouts.judge("acme", plan, outcome(web=crashing), now=NOW)
    assert [(f.state, f.reason) for f in ended.finished] == [("failed", "replica 1 crash-loops")]
    assert rollouts.failed(ended)


def test_judge_writes_nothing_while_a_revision_progresses() -> None:
    plan = choose(template("web"), read=known())
    halfway = Observed(desired=2, ready=1, updated=1, total=1)
    assert not rollouts.judge("acme", plan, outcome(web=halfway), now=NOW)
