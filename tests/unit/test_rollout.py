"""rollout.step(): the next safe moves for one tenant, table by table."""

from __future__ import annotations

from armillary.runtime.rollout import Current, step
from tests.support.rollouts import current, instance, template


def test_fresh_tenant_creates_every_replica_of_components_without_dependencies() -> None:
    agent = template("agent", replicas=2)
    s = step(instance(agent), [])
    assert [(c.template.component, c.replica) for c in s.create] == [("agent", 0), ("agent", 1)]
    assert s.remove == []


def test_dependent_waits_until_its_dependency_is_ready_and_gets_its_url() -> None:
    seed = template("seed", type="job", ports=())
    agent = template("agent", depends_on=("seed",))
    reader = template("reader", depends_on=("agent",))
    first = step(instance(seed, agent, reader), [])
    assert [c.template.component for c in first.create] == ["seed"]
    assert first.components["agent"].waiting_for == ("seed",)

    seeded = [current(seed, 0, state="succeeded")]
    second = step(instance(seed, agent, reader), seeded)
    assert [c.template.component for c in second.create] == ["agent"]

    running = [*seeded, current(agent, 0, url="http://127.0.0.1:20001")]
    third = step(instance(seed, agent, reader), running)
    assert [c.template.component for c in third.create] == ["reader"]
    assert third.create[0].extra_env == {"AGENT_URL": "http://127.0.0.1:20001"}


def test_converged_tenant_is_idle() -> None:
    agent = template("agent", replicas=2)
    s = step(instance(agent), [current(agent, 0), current(agent, 1)])
    assert s.idle
    assert s.components["agent"].ready == 2


def test_changed_spec_rolls_surge_first_one_at_a_time() -> None:
    old = template("agent", replicas=2, env={"V": "1"})
    new = template("agent", replicas=2, env={"V": "2"})
    running_old = [current(old, 0, id="o0"), current(old, 1, id="o1")]
    s = step(instance(new), running_old)
    assert [(c.replica) for c in s.create] == [
        0
    ] and s.remove == []  # one surge replica, nothing stopped

    starting = [*running_old, current(new, 0, id="n0", state="starting")]
    assert step(instance(new), starting).idle  # wait for it to be ready

    ready = [*running_old, current(new, 0, id="n0")]
    s = step(instance(new), ready)
    assert s.remove == ["o0"]
    assert [c.replica for c in s.create] == [1]  # next slot's surge starts as the old one goes


def test_scale_down_removes_the_highest_slots() -> None:
    agent = template("agent", replicas=1)
    s = step(instance(agent), [current(agent, 0, id="a0"), current(agent, 1, id="a1")])
    assert s.remove == ["a1"]


def test_removed_component_and_deleted_tenant() -> None:
    agent = template("agent")
    gone = template("gone")
    s = step(instance(agent), [current(agent, 0, id="a0"), current(gone, 0, id="g0")])
    assert s.remove == ["g0"]
    assert step(None, [current(agent, 0, id="a0")]).remove == ["a0"]


def test_failing_replicas_are_reported_as_problems() -> None:
    agent = template("agent")
    failing = Current(
        id="a0",
        component="agent",
        replica=0,
        spec_hash=agent.spec_hash(),
        state="failed",
        reason="CommandNotFound",
        message="no such file",
    )
    s = step(instance(agent), [failing])
    assert s.components["agent"].problems == ("replica 0 failed (CommandNotFound: no such file)",)
    assert s.components["agent"].ready == 0


def test_a_component_that_cannot_run_here_says_why() -> None:
    agent = template("agent", problem="release agent@1.0.0: not built yet")
    s = step(instance(agent), [])
    assert s.create == []
    assert s.components["agent"].problems == ("release agent@1.0.0: not built yet",)


def test_dependencies_come_first_whatever_the_order_in_the_stack() -> None:
    reader = template("reader", depends_on=("agent",))
    agent = template("agent")
    s = step(instance(reader, agent), [current(agent, 0, url="http://127.0.0.1:20001")])
    assert [c.template.component for c in s.create] == ["reader"]
    assert s.create[0].extra_env == {"AGENT_URL": "http://127.0.0.1:20001"}


def test_fixed_ports_are_replaced_stop_first() -> None:
    old = template("web", ports=(("http", 8080),), env={"V": "1"})
    new = template("web", ports=(("http", 8080),), env={"V": "2"})
    s = step(instance(new), [current(old, 0, id="o0")])
    assert (s.remove, s.create) == (["o0"], [])  # the port must be free before the successor starts
    s = step(instance(new), [])
    assert [c.replica for c in s.create] == [0]


def test_crash_loop_problems_do_not_change_with_every_crash() -> None:
    agent = template("agent")
    looping = [
        Current(
            id="a0",
            component="agent",
            replica=0,
            spec_hash=agent.spec_hash(),
            state="crashloop",
            reason="CrashLoop",
            message=f"exited with code 1, {n} in a row; restarting in {n}s",
        )
        for n in (3, 4)
    ]
    first, second = (step(instance(agent), [c]).components["agent"].problems for c in looping)
    assert first == second == ("replica 0 crashloop (CrashLoop)",)


def test_dependents_wait_for_replica_0_and_always_get_its_url() -> None:
    agent = template("agent", replicas=2)
    reader = template("reader", depends_on=("agent",))
    only_replica_1 = [
        current(agent, 0, state="starting"),
        current(agent, 1, url="http://127.0.0.1:20002"),
    ]
    s = step(instance(agent, reader), only_replica_1)
    assert s.create == [] and s.components["reader"].waiting_for == ("agent",)
    both = [
        current(agent, 0, url="http://127.0.0.1:20001"),
        current(agent, 1, url="http://127.0.0.1:20002"),
    ]
    s = step(instance(agent, reader), both)
    assert s.create[0].extra_env == {"AGENT_URL": "http://127.0.0.1:20001"}


def test_fixed_ports_with_several_replicas_are_replaced_one_slot_at_a_time() -> None:
    old = template("web", replicas=2, ports=(("http", 8080),), env={"V": "1"})
    new = template("web", replicas=2, ports=(("http", 8080),), env={"V": "2"})
    s = step(instance(new), [current(old, 0, id="o0"), current(old, 1, id="o1")])
    assert (s.remove, s.create) == (["o0"], [])
    s = step(instance(new), [current(old, 1, id="o1")])
    assert [c.replica for c in s.create] == [0] and s.remove == []  # slot 1 keeps serving
    s = step(instance(new), [current(new, 0, id="n0", state="starting"), current(old, 1, id="o1")])
    assert s.idle
    s = step(instance(new), [current(new, 0, id="n0"), current(old, 1, id="o1")])
    assert s.remove == ["o1"]


def test_failure_problems_keep_the_cause_and_drop_the_retry_count() -> None:
    agent = template("agent")
    failing = Current(
        id="a0",
        component="agent",
        replica=0,
        spec_hash=agent.spec_hash(),
        state="failed",
        reason="PortInUse",
        message="port 8080 (http) is in use on 127.0.0.1; 4 in a row; restarting in 4s",
    )
    assert step(instance(agent), [failing]).components["agent"].problems == (
        "replica 0 failed (PortInUse: port 8080 (http) is in use on 127.0.0.1)",
    )
