"""Node loss, pure: which silent nodes are lost (`liveness`), and what a tenant's
step does with replicas on a lost node (`rollout.step`, per `on_node_lost`)."""

from __future__ import annotations

import datetime as dt

import pydantic
import pytest

from armillary.config import Settings
from armillary.control.liveness import Heard, judge, silent_s, watching_from
from armillary.runtime.rollout import step
from tests.support.rollouts import current, instance, template

T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# --- liveness.judge ---------------------------------------------------------------------


def test_a_node_silent_longer_than_the_window_is_lost_and_no_other() -> None:
    nodes = [
        Heard(name="a", heartbeat_at=at(0)),
        Heard(name="b", heartbeat_at=at(9)),
        Heard(name="c", heartbeat_at=at(4)),  # exactly the window: not yet
    ]
    verdict = judge(nodes, now=at(10), lost_after_s=6, watching_since=at(-100))
    assert verdict.lost == ("a",)
    assert verdict.held_back == ()


def test_silence_counts_from_when_the_watch_began() -> None:
    """A server that just started has not been hearing anything: a heartbeat from
    before it started (or none at all) gets a whole window from the start."""
    nodes = [Heard(name="a", heartbeat_at=at(-3600)), Heard(name="b", heartbeat_at=None)]
    fresh = [*nodes, Heard(name="c", heartbeat_at=at(5))]
    assert judge(fresh, now=at(5), lost_after_s=6, watching_since=at(0)).lost == ()
    assert judge(fresh, now=at(6.5), lost_after_s=6, watching_since=at(0)).lost == ("a", "b")
    assert silent_s(nodes[1], now=at(6.5), since=at(0)) == 6.5


def test_every_node_silent_at_once_is_held_back_not_declared() -> None:
    nodes = [Heard(name="a", heartbeat_at=at(0)), Heard(name="b", heartbeat_at=at(1))]
    verdict = judge(nodes, now=at(30), lost_after_s=6, watching_since=at(-100))
    assert verdict.lost == ()
    assert verdict.held_back == ("a", "b")
    # A single node is judged as any: nothing else could be at fault.
    alone = judge(nodes[:1], now=at(30), lost_after_s=6, watching_since=at(-100))
    assert alone.lost == ("a",)


def test_a_stalled_watch_starts_counting_again() -> None:
    assert watching_from(at(0), previous_check=None, now=at(5), lost_after_s=6) == at(5)
    assert watching_from(at(0), previous_check=at(4.5), now=at(5), lost_after_s=6) == at(0)
    # Four seconds without a check (more than half the window): heartbeats went unheard.
    assert watching_from(at(0), previous_check=at(1), now=at(5), lost_after_s=6) == at(5)
    # A grace given at start (a time ahead) is kept through checks and stalls alike.
    assert watching_from(at(20), previous_check=at(1), now=at(5), lost_after_s=6) == at(20)


def test_heartbeats_must_fit_twice_in_the_window() -> None:
    assert Settings().node_heartbeat_s * 2 <= Settings().node_lost_after_s
    Settings(node_heartbeat_s=1, node_lost_after_s=2)
    with pytest.raises(pydantic.ValidationError, match="ARMILLARY_NODE_HEARTBEAT_S"):
        Settings(node_heartbeat_s=5, node_lost_after_s=6)


# --- rollout.step with lost nodes ------------------------------------------------------


def test_replicas_on_a_lost_node_are_replaced_at_once_not_surge_first() -> None:
    web = template("web", replicas=2)
    held = [
        current(web, 0, id="w0", node="a", node_state="lost"),
        current(web, 1, id="w1", node="b"),
    ]
    s = step(instance(web), held)
    assert s.remove == ["w0"]
    assert [(c.template.component, c.replica) for c in s.create] == [("web", 0)]
    assert s.components["web"].ready == 1  # the lost one is not counted
    assert s.components["web"].problems == ()


def test_a_lost_replica_of_an_old_spec_is_replaced_too() -> None:
    old = template("web", env={"V": "1"})
    new = template("web", env={"V": "2"})
    s = step(instance(new), [current(old, 0, id="o0", node="a", node_state="lost")])
    assert s.remove == ["o0"]
    assert [c.replica for c in s.create] == [0]


def test_a_job_that_succeeded_on_a_lost_node_is_not_run_again() -> None:
    seed = template("seed", type="job", ports=())
    done = [current(seed, 0, id="s0", state="succeeded", node="a", node_state="lost")]
    assert step(instance(seed), done).idle


def test_wait_keeps_the_replica_and_says_it_waits_for_its_node() -> None:
    db = template("db", on_node_lost="wait")
    s = step(instance(db), [current(db, 0, id="d0", node="a", node_state="lost")])
    assert s.idle
    observed = s.components["db"]
    assert observed.ready == 0
    assert observed.problems == ("replica 0 waits for node a (lost)",)


def test_wait_holds_the_slot_through_a_spec_change() -> None:
    """Neither a surge successor nor a stop-first removal: either would let a second
    copy run while the first may still run on the lost node."""
    for surge in (1, 0):
        old = template("db", env={"V": "1"}, on_node_lost="wait", max_surge=surge)
        new = template("db", env={"V": "2"}, on_node_lost="wait", max_surge=surge)
        s = step(instance(new), [current(old, 0, id="o0", node="a", node_state="lost")])
        assert s.idle, surge


def test_wait_lets_the_other_slots_move() -> None:
    web = template("web", replicas=3, on_node_lost="wait")
    held = [
        current(web, 0, id="w0", node="a", node_state="lost"),
        current(web, 2, id="w2", node="b"),
    ]
    s = step(instance(web), held)
    assert [c.replica for c in s.create] == [1]
    assert s.remove == []


def test_a_lost_replica_is_removed_when_its_slot_goes_away_even_with_wait() -> None:
    web = template("web", replicas=1, on_node_lost="wait")
    held = [current(web, 0, id="w0"), current(web, 1, id="w1", node="a", node_state="lost")]
    assert step(instance(web), held).remove == ["w1"]


def test_a_dependent_waits_while_its_dependency_is_on_a_lost_node() -> None:
    db = template("db", on_node_lost="wait")
    app = template("app", depends_on=("db",))
    lost = [current(db, 0, id="d0", node="a", node_state="lost", url="http://10.0.0.1:1")]
    s = step(instance(db, app), lost)
    assert s.create == []
    assert s.components["app"].waiting_for == ("db",)
