"""rollout.step() on a node being drained: replicas move surge-first within the budget.

A replica whose `node_state` is `draining` is replaced like one whose spec changed:
its successor (same spec, same slot) is created first, and the old one is removed
once that successor is ready, never leaving fewer ready than the policy allows. A
job's replica is left to finish. The simulation at the end drives a drain to the end
with every interleaving of "successors become ready" the step allows, and checks the
budget after every move.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.runtime.instance import Policy, Template
from armillary.runtime.rollout import Current, step
from tests.support.rollouts import current, instance, template


def draining(c: Current) -> Current:
    return dataclasses.replace(c, node_state="draining")


def with_policy(t: Template, *, surge: int, unavailable: int) -> Template:
    return dataclasses.replace(t, policy=Policy(max_surge=surge, max_unavailable=unavailable))


def test_a_replica_on_a_draining_node_gets_a_successor_first_and_goes_once_it_is_ready() -> None:
    web = template("web", replicas=2)
    held = [draining(current(web, 0, id="d0")), current(web, 1, id="k1")]
    s = step(instance(web), held)
    assert [c.replica for c in s.create] == [0] and s.remove == []
    assert s.create[0].spec_hash == held[0].spec_hash  # the same spec, moved

    starting = [*held, current(web, 0, id="n0", state="starting")]
    assert step(instance(web), starting).idle  # the old one stays until the new is ready

    ready = [*held, current(web, 0, id="n0")]
    s = step(instance(web), ready)
    assert s.remove == ["d0"] and s.create == []
    assert s.components["web"].ready == 2  # a slot counted once, however many copies


def test_without_a_drain_the_same_replicas_are_left_alone() -> None:
    web = template("web", replicas=2)
    assert step(instance(web), [current(web, 0), current(web, 1)]).idle


def test_a_job_on_a_draining_node_is_left_to_finish() -> None:
    job = template("seed", type="job", ports=())
    assert step(instance(job), [draining(current(job, 0, state="running"))]).idle
    assert step(instance(job), [draining(current(job, 0, state="succeeded"))]).idle


def test_dependents_get_the_successors_url_once_it_is_ready() -> None:
    web = template("web")
    reader = template("reader", depends_on=("web",))
    old = draining(current(web, 0, id="d0", url="http://10.0.0.1:1"))
    new = current(web, 0, id="n0", url="http://10.0.0.2:2")
    s = step(instance(web, reader), [old, new])
    assert s.remove == ["d0"]
    assert [c.extra_env for c in s.create] == [{"WEB_URL": "http://10.0.0.2:2"}]


def test_with_no_surge_a_replica_goes_first_only_within_max_unavailable() -> None:
    web = with_policy(template("web", replicas=3), surge=0, unavailable=1)
    held = [draining(current(web, i, id=f"d{i}")) for i in range(3)]
    s = step(instance(web), held)
    assert s.remove == ["d0"] and s.create == []  # one down at a time, then re-created


def _simulate(desired: int, surge: int, unavailable: int, order: list[int]) -> None:
    """Drain every replica of `web`: after each step apply its moves; successors
    become ready one at a time in `order`'s preference. Check the budget throughout."""
    web = with_policy(template("web", replicas=desired), surge=surge, unavailable=unavailable)
    floor = desired - max(unavailable, 0 if surge else 1)
    held = [draining(current(web, i, id=f"d{i}")) for i in range(desired)]
    ids = itertools.count()
    for _ in range(10 * desired + 10):
        s = step(instance(web), held)
        held = [c for c in held if c.id not in s.remove]
        held += [current(web, c.replica, id=f"n{next(ids)}", state="starting") for c in s.create]
        assert sum(1 for c in held if c.ready) >= floor
        # A slot emptied within max_unavailable is filled at once, on top of the surge
        # (as in a change of spec): the surge and the unavailable together bound it.
        assert len(held) <= desired + surge + unavailable
        starting = [c for c in held if c.state == "starting"]
        if not starting and s.idle:
            break
        if starting:  # one successor becomes ready, chosen by `order`
            pick = starting[order[len(held) % len(order)] % len(starting)]
            held = [dataclasses.replace(c, state="running") if c is pick else c for c in held]
    assert sorted(c.replica for c in held) == list(range(desired))
    assert all(c.node_state == "ready" and c.ready for c in held)


@pytest.mark.parametrize(("surge", "unavailable"), [(1, 0), (1, 2), (0, 1), (2, 1), (0, 2)])
def test_a_drain_of_four_ends_with_every_replica_moved_and_the_floor_held(
    surge: int, unavailable: int
) -> None:
    _simulate(4, surge, unavailable, [0])


@given(
    desired=st.integers(min_value=1, max_value=6),
    surge=st.integers(min_value=0, max_value=3),
    unavailable=st.integers(min_value=0, max_value=3),
    order=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=8),
)
def test_any_drain_moves_everything_and_never_goes_below_the_floor(
    desired: int, surge: int, unavailable: int, order: list[int]
) -> None:
    if surge == 0 and unavailable == 0:
        unavailable = 1  # the Stack refuses a policy that cannot move anything
    _simulate(desired, surge, unavailable, order)
