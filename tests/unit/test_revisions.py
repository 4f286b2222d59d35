"""Rollout budgets (rollout.step with max_surge/max_unavailable) and revisions
(choose/judge/undo_target): tables plus properties, no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.control import revisions
from armillary.runtime.instance import Policy, Template, template_from_json, template_to_json
from armillary.runtime.rollout import Observed, step
from tests.support.rollouts import current, instance, template

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def with_policy(t: Template, **policy: object) -> Template:
    return dataclasses.replace(t, policy=Policy(**policy))  # type: ignore[arg-type]


def released(version: str, **policy: object) -> Template:
    base = template("agent", replicas=2, env={"V": version})
    return dataclasses.replace(base, release=f"agent@{version}", policy=Policy(**policy))  # type: ignore[arg-type]


def revision(number: int, t: Template, state: str, *, at: dt.datetime = T0) -> revisions.Revision:
    return revisions.Revision(
        number=number,
        template=t,
        template_hash=t.spec_hash(),
        release=t.release,
        state=state,
        reason="boom" if state == "failed" else None,
        started_at=at,
    )


@pytest.mark.parametrize(
    ("surge", "unavailable", "creates", "removes"),
    [
        (1, 0, 1, 0),  # the default: one new replica beside the old ones
        (2, 0, 2, 0),
        (0, 1, 0, 1),  # stop-first, one at a time
        (0, 2, 0, 2),
        (1, 1, 2, 1),  # a surge, a stop-first, and a surge into the room that made
    ],
)
def test_budgets_bound_the_first_moves_of_a_replacement(
    surge: int, unavailable: int, creates: int, removes: int
) -> None:
    old = template("web", replicas=4, env={"V": "1"})
    new = with_policy(
        template("web", replicas=4, env={"V": "2"}), max_surge=surge, max_unavailable=unavailable
    )
    s = step(instance(new), [current(old, i, id=f"o{i}") for i in range(4)])
    assert (len(s.create), len(s.remove)) == (creates, removes)


@given(
    replicas=st.integers(1, 6),
    surge=st.integers(0, 3),
    unavailable=st.integers(0, 3),
    ready_new=st.sets(st.integers(0, 5)),
)
def test_budgets_are_never_exceeded(
    replicas: int, surge: int, unavailable: int, ready_new: set[int]
) -> None:
    if surge == 0 and unavailable == 0:
        unavailable = 1
    old = template("web", replicas=replicas, env={"V": "1"})
    new = with_policy(
        template("web", replicas=replicas, env={"V": "2"}),
        max_surge=surge,
        max_unavailable=unavailable,
    )
    live = [current(old, i, id=f"o{i}") for i in range(replicas)]
    live += [current(new, i, id=f"n{i}") for i in sorted(ready_new) if i < replicas]
    s = step(instance(new), live)
    after = len(live) + len(s.create) - len(set(s.remove))
    assert after <= replicas + surge
    still_ready = [c for c in live if c.id not in s.remove and c.ready]
    ready_before = sum(1 for c in live if c.ready)
    assert len(still_ready) >= min(ready_before, replicas - unavailable)


def test_a_first_revision_is_recorded_and_run() -> None:
    choice = revisions.choose(released("1.0.0"), [])
    assert choice.record and choice.run == released("1.0.0")


def test_a_failed_revision_rolls_back_to_the_last_complete_one() -> None:
    good, bad = released("1.1.0"), released("1.2.0")
    history = [revision(1, good, "complete"), revision(2, bad, "failed")]
    choice = revisions.choose(bad, history)
    assert choice.run == good and choice.rolled_back == history[1] and not choice.record


def test_auto_rollback_off_keeps_the_failed_revision() -> None:
    good, bad = released("1.1.0"), released("1.2.0", auto_rollback=False)
    choice = revisions.choose(bad, [revision(1, good, "complete"), revision(2, bad, "failed")])
    assert choice.run == bad and choice.rolled_back is None


def test_a_release_that_failed_elsewhere_is_held() -> None:
    good, new = released("1.1.0"), released("1.2.0")
    wave = revisions.Wave(failed=(("t1", "replica 0 unhealthy"),))
    assert revisions.needs_wave(new, [revision(1, good, "complete")])
    choice = revisions.choose(new, [revision(1, good, "complete")], wave)
    assert choice.run == good and not choice.record
    assert choice.held is not None and "failed in tenant t1" in choice.held


def test_max_parallel_tenants_holds_the_next_tenant() -> None:
    good, new = released("1.1.0"), released("1.2.0", max_parallel_tenants=2)
    history = [revision(1, good, "complete")]
    assert revisions.choose(new, history, revisions.Wave(progressing=("a",))).record
    held = revisions.choose(new, history, revisions.Wave(progressing=("a", "b")))
    assert held.held is not None and "a, b" in held.held and held.run == good


def test_a_change_that_is_not_a_release_is_never_held() -> None:
    good = template("agent", env={"V": "1"})
    changed = template("agent", env={"V": "2"})
    assert not revisions.needs_wave(changed, [revision(1, good, "complete")])


def test_judge_completes_fails_and_waits() -> None:
    r = revision(2, released("1.2.0", progress_deadline_s=60), "progressing")
    done = Observed(desired=2, ready=2, updated=2, total=2)
    assert revisions.judge(r, done, can_fail=True, now=T0) == ("complete", "2/2 replicas ready")
    broken = Observed(desired=2, ready=0, updated=1, total=3, failing=("replica 0 unhealthy",))
    assert revisions.judge(r, broken, can_fail=True, now=T0) == ("failed", "replica 0 unhealthy")
    assert revisions.judge(r, broken, can_fail=False, now=T0) is None  # nothing to go back to
    slow = Observed(desired=2, ready=1, updated=2, total=3)
    assert revisions.judge(r, slow, can_fail=True, now=T0) is None
    late = T0 + dt.timedelta(seconds=61)
    verdict = revisions.judge(r, slow, can_fail=True, now=late)
    assert verdict is not None and verdict[0] == "failed" and "deadline" in verdict[1]


def test_undo_goes_to_the_previous_completed_release() -> None:
    v1, v2, v3 = released("1.0.0"), released("1.1.0"), released("1.2.0")
    history = [revision(1, v1, "complete"), revision(2, v2, "complete"), revision(3, v3, "failed")]
    assert revisions.undo_target(history).number == 2
    assert revisions.undo_target(history[:2]).number == 1
    assert revisions.undo_target(history, to_revision=1).number == 1
    with pytest.raises(ValueError, match="no revision 9"):
        revisions.undo_target(history, to_revision=9)
    plain = [revision(1, template("agent"), "complete"), revision(2, v2, "complete")]
    with pytest.raises(ValueError, match="not a release"):
        revisions.undo_target(plain)


def test_templates_survive_their_json_form() -> None:
    t = dataclasses.replace(released("1.0.0"), checkout=("/repo", "abc1234"), ports=(("http", 80),))
    assert template_from_json(template_to_json(t)) == t
    assert template_from_json(template_to_json(t)).spec_hash() == t.spec_hash()


def test_a_stored_revision_read_back_naive_is_utc() -> None:
    from armillary.control import rollouts
    from armillary.store import rollouts as stored

    t = released("1.0.0")
    row = stored.Revision(
        tenant="acme",
        component="agent",
        revision=1,
        template_hash=t.spec_hash(),
        template=template_to_json(t),
        release=t.release,
        state="progressing",
        reason=None,
        started_at=T0.replace(tzinfo=None),  # what SQLite gives back
        finished_at=None,
    )
    read = rollouts.revision(row)
    assert read.started_at == T0
    late = T0 + dt.timedelta(seconds=601)
    verdict = revisions.judge(read, Observed(desired=2, ready=1), can_fail=True, now=late)
    assert verdict is not None and verdict[0] == "failed"


def test_an_unhealthy_new_replica_fails_the_change_only_after_the_grace() -> None:
    r = revision(2, released("1.2.0", unhealthy_grace_s=30), "progressing")
    sick = Observed(desired=2, ready=1, updated=1, total=3, unhealthy=("replica 0 unhealthy",))
    assert revisions.judge(r, sick, can_fail=True, now=T0 + dt.timedelta(seconds=29)) is None
    late = revisions.judge(r, sick, can_fail=True, now=T0 + dt.timedelta(seconds=30))
    assert late == ("failed", "replica 0 unhealthy")
    crashed = Observed(desired=2, ready=1, updated=1, total=3, failing=("replica 0 crashloop",))
    assert revisions.judge(r, crashed, can_fail=True, now=T0) == ("failed", "replica 0 crashloop")
