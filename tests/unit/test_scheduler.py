"""place(): feasibility, then spread or binpack, deterministic, explained."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from armillary.runtime.scheduler import Demand, NodeInfo, Placed, place


def nodes(*names: str, cpu: int = 4000, memory: int = 8192) -> list[NodeInfo]:
    return [NodeInfo(name=n, cpu_millicores=cpu, memory_mb=memory) for n in names]


def test_spread_puts_replicas_of_one_group_on_different_nodes() -> None:
    demands = [Demand(key=f"agent/{i}", group="t/agent") for i in range(3)]
    placement = place(nodes("a", "b", "c"), [], demands)
    assert sorted(placement.assigned.values()) == ["a", "b", "c"]


def test_spread_counts_what_is_already_placed() -> None:
    placed = [Placed(node="a", group="t/agent"), Placed(node="b", group="t/agent")]
    placement = place(nodes("a", "b", "c"), placed, [Demand(key="x", group="t/agent")])
    assert placement.assigned == {"x": "c"}


def test_binpack_fills_the_fullest_node_first() -> None:
    placed = [Placed(node="b", group="other", memory_mb=6000)]
    demands = [Demand(key="x", group="g", memory_mb=1000)]
    assert place(nodes("a", "b"), placed, demands, "binpack").assigned == {"x": "b"}


def test_infeasible_nodes_are_explained_per_reason() -> None:
    infos = [
        NodeInfo(name="a", cpu_millicores=1000, memory_mb=100),
        NodeInfo(name="b", cpu_millicores=4000, memory_mb=4000, ready=False),
        NodeInfo(name="c", cpu_millicores=4000, memory_mb=4000, schedulable=False),
        NodeInfo(name="d", cpu_millicores=100, memory_mb=4000),
    ]
    placement = place(infos, [], [Demand(key="x", group="g", cpu_millicores=500, memory_mb=200)])
    assert placement.assigned == {}
    assert placement.unplaced["x"] == {
        "have too little memory": 1,
        "not ready": 1,
        "cordoned": 1,
        "have too little CPU": 1,
    }
    assert "1 node(s) cordoned" in placement.explain("x")


def test_labels_constrain_placement() -> None:
    infos = [
        NodeInfo(name="a", cpu_millicores=1, memory_mb=1),
        NodeInfo(name="b", cpu_millicores=1, memory_mb=1, labels={"zone": "eu"}),
    ]
    placement = place(infos, [], [Demand(key="x", group="g", node_labels={"zone": "eu"})])
    assert placement.assigned == {"x": "b"}


def test_no_nodes_explains_itself() -> None:
    placement = place([], [], [Demand(key="x", group="g")])
    assert placement.explain("x") == "no nodes are registered"


node_strategy = st.builds(
    NodeInfo,
    name=st.sampled_from(["n1", "n2", "n3", "n4"]),
    cpu_millicores=st.integers(0, 4000),
    memory_mb=st.integers(0, 4096),
    ready=st.booleans(),
    schedulable=st.booleans(),
)
demand_strategy = st.builds(
    Demand,
    key=st.uuids().map(str),
    group=st.sampled_from(["t/a", "t/b", "u/a"]),
    cpu_millicores=st.integers(0, 1500),
    memory_mb=st.integers(0, 1500),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(node_strategy, max_size=4, unique_by=lambda n: n.name),
    st.lists(demand_strategy, max_size=12, unique_by=lambda d: d.key),
    st.sampled_from(["spread", "binpack"]),
)
def test_never_overcommits_never_places_on_infeasible_nodes_and_is_deterministic(
    infos: list[NodeInfo], demands: list[Demand], strategy: str
) -> None:
    placement = place(infos, [], demands, strategy)  # type: ignore[arg-type]
    assert placement == place(infos, [], demands, strategy)  # type: ignore[arg-type]
    by_name = {n.name: n for n in infos}
    by_key = {d.key: d for d in demands}
    for name in placement.assigned.values():
        assert by_name[name].ready and by_name[name].schedulable
    for node in infos:
        mine = [by_key[k] for k, n in placement.assigned.items() if n == node.name]
        assert sum(d.cpu_millicores for d in mine) <= node.cpu_millicores
        assert sum(d.memory_mb for d in mine) <= node.memory_mb
    assert set(placement.assigned) | set(placement.unplaced) == set(by_key)
