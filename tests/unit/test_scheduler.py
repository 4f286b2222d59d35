"""place(): feasibility, then spread or binpack on a node index, deterministic, explained.
Table cases, and an index kept by node changes equal to one built afresh; the
properties of place(), against a brute-force oracle, are in test_scheduler_properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from armillary.runtime.scheduler import Demand, NodeIndex, NodeInfo, Placed, place


def nodes(*names: str, cpu: int = 4000, memory: int = 8192) -> list[NodeInfo]:
    return [NodeInfo(name=n, cpu_millicores=cpu, memory_mb=memory) for n in names]


def test_spread_puts_replicas_of_one_group_on_different_nodes() -> None:
    demands = [Demand(key=f"agent/{i}", group="t/agent") for i in range(3)]
    placement = place(NodeIndex.build(nodes("a", "b", "c"), []), demands)
    assert sorted(placement.assigned.values()) == ["a", "b", "c"]


def test_spread_counts_what_is_already_placed() -> None:
    placed = [Placed(node="a", group="t/agent"), Placed(node="b", group="t/agent")]
    placement = place(
        NodeIndex.build(nodes("a", "b", "c"), placed), [Demand(key="x", group="t/agent")]
    )
    assert placement.assigned == {"x": "c"}


def test_binpack_fills_the_fullest_node_first() -> None:
    placed = [Placed(node="b", group="other", memory_mb=6000)]
    demands = [Demand(key="x", group="g", memory_mb=1000)]
    assert place(NodeIndex.build(nodes("a", "b"), placed), demands, "binpack").assigned == {
        "x": "b"
    }


def test_infeasible_nodes_are_explained_per_reason() -> None:
    infos = [
        NodeInfo(name="a", cpu_millicores=1000, memory_mb=100),
        NodeInfo(name="b", cpu_millicores=4000, memory_mb=4000, ready=False),
        NodeInfo(name="c", cpu_millicores=4000, memory_mb=4000, schedulable=False),
        NodeInfo(name="d", cpu_millicores=100, memory_mb=4000),
    ]
    placement = place(
        NodeIndex.build(infos, []), [Demand(key="x", group="g", cpu_millicores=500, memory_mb=200)]
    )
    assert placement.assigned == {}
    assert placement.unplaced["x"] == {
        "have too little memory": 1,
        "not ready": 1,
        "cordoned": 1,
        "have too little CPU": 1,
    }
    assert "1 node(s) cordoned" in placement.explain("x")


def test_a_lost_node_takes_nothing_and_says_so_first() -> None:
    """A node declared lost is infeasible whatever else it is (still connected, as a
    stopped machine's socket stays open; room to spare), and "lost" is its reason."""
    infos = [
        NodeInfo(name="a", cpu_millicores=4000, memory_mb=4000, lost=True),
        NodeInfo(name="b", cpu_millicores=4000, memory_mb=4000, lost=True, ready=False),
    ]
    demands = [Demand(key="x", group="g", memory_mb=100)]
    for strategy in ("spread", "binpack"):
        placement = place(NodeIndex.build(infos, []), demands, strategy)
        assert placement.assigned == {}
        assert placement.unplaced["x"] == {"lost": 2}
        assert placement.explain("x") == "no node fits: 2 node(s) lost"
    survivor = [*infos, NodeInfo(name="c", cpu_millicores=1000, memory_mb=1000)]
    assert place(NodeIndex.build(survivor, []), demands).assigned == {"x": "c"}


def test_a_node_found_again_takes_work_again() -> None:
    index = NodeIndex.build(
        [NodeInfo(name="a", cpu_millicores=1000, memory_mb=1000, lost=True)], []
    )
    assert index.eligible == []
    index.put_node(NodeInfo(name="a", cpu_millicores=1000, memory_mb=1000))
    assert place(index, [Demand(key="x", group="g")]).assigned == {"x": "a"}


def test_labels_constrain_placement() -> None:
    infos = [
        NodeInfo(name="a", cpu_millicores=1, memory_mb=1),
        NodeInfo(name="b", cpu_millicores=1, memory_mb=1, labels={"zone": "eu"}),
    ]
    placement = place(
        NodeIndex.build(infos, []), [Demand(key="x", group="g", node_labels={"zone": "eu"})]
    )
    assert placement.assigned == {"x": "b"}


def test_no_nodes_explains_itself() -> None:
    placement = place(NodeIndex.build([], []), [Demand(key="x", group="g")])
    assert placement.explain("x") == "no nodes are registered"


def test_binpack_takes_the_fullest_node_that_fits_not_one_too_full() -> None:
    placed = [
        Placed(node="a", group="g", memory_mb=7900),  # fullest, but 292 MB left
        Placed(node="b", group="g", memory_mb=6000),
        Placed(node="c", group="g", memory_mb=5000),
    ]
    demands = [
        Demand(key="x", group="h", memory_mb=1000),
        Demand(key="y", group="h", memory_mb=1000),
    ]
    placement = place(NodeIndex.build(nodes("a", "b", "c"), placed), demands, "binpack")
    assert placement.assigned == {"x": "b", "y": "b"}


def test_spread_on_a_large_fleet_samples_yet_stays_balanced() -> None:
    """1,000 nodes, 3,000 replicas in groups of three, each step on the index the
    last one left: every node ends with 2 to 4 (a full scan gives exactly 3)."""
    index = NodeIndex.build(nodes(*(f"n{i:04}" for i in range(1000))), [])
    for tenant in range(1000):
        demands = [
            Demand(key=f"web/{r}", group=f"t{tenant}/web", cpu_millicores=10) for r in range(3)
        ]
        placement = place(index, demands)
        assert len(set(placement.assigned.values())) == 3
        for demand in demands:
            index.add(
                Placed(node=placement.assigned[demand.key], group=demand.group, cpu_millicores=10)
            )
    assert min(index.replicas.values()) >= 2 and max(index.replicas.values()) <= 4


def test_spread_walks_past_its_sample_to_a_node_without_the_group() -> None:
    names = [f"n{i}" for i in range(10)]
    placed = [Placed(node=n, group="t/web") for n in names if n != "n7"]
    demands = [Demand(key=f"web/{r}", group="t/web") for r in range(9, 12)]
    index = NodeIndex.build(nodes(*names), placed)
    assert place(index, demands, sample_size=1).assigned["web/9"] == "n7"


NAMES = [f"n{i}" for i in range(8)]
GROUPS = ["t/a", "t/b", "u/a"]
zone = st.dictionaries(st.just("zone"), st.sampled_from(["eu", "us"]), max_size=1)
node_strategy = st.builds(
    NodeInfo,
    name=st.sampled_from(NAMES),
    cpu_millicores=st.integers(0, 4000),
    memory_mb=st.integers(0, 4096),
    labels=zone,
    ready=st.sampled_from([True, True, True, False]),
    schedulable=st.sampled_from([True, True, True, False]),
    lost=st.sampled_from([False, False, False, True]),
)
placed_strategy = st.builds(
    Placed,
    node=st.sampled_from([*NAMES, "gone"]),  # "gone": a node since removed
    group=st.sampled_from(GROUPS),
    cpu_millicores=st.integers(0, 1500),
    memory_mb=st.integers(0, 1500),
)
demand_strategy = st.builds(
    Demand,
    key=st.uuids().map(str),
    group=st.sampled_from(GROUPS),
    cpu_millicores=st.integers(0, 1500),
    memory_mb=st.integers(0, 1500),
    node_labels=zone,
)
fleets = st.lists(node_strategy, max_size=8, unique_by=lambda n: n.name)
existing = st.lists(placed_strategy, max_size=16)
demand_lists = st.lists(demand_strategy, max_size=12, unique_by=lambda d: d.key)
strategies = st.sampled_from(["spread", "binpack"])
samples = st.sampled_from([1, 2, 3, 8])  # below the fleet size, so sampling is exercised


@settings(max_examples=200, deadline=None)
@given(fleets, existing, st.lists(st.tuples(st.booleans(), node_strategy), max_size=12))
def test_an_index_kept_with_put_node_and_drop_node_equals_one_built_afresh(
    infos: list[NodeInfo], placed: list[Placed], changes: list[tuple[bool, NodeInfo]]
) -> None:
    """Nodes joining, changing (capacity, labels, readiness, cordon) and leaving, with
    allocations on them: the index kept current is the one built from the result."""
    index = NodeIndex.build(infos, placed)
    fleet = {n.name: n for n in infos}
    for joins, info in changes:
        if joins:
            index.put_node(info)
            fleet[info.name] = info
        else:
            index.drop_node(info.name)
            fleet.pop(info.name, None)
        assert index == NodeIndex.build(fleet.values(), placed)
