"""Properties of `place()` on fleets that already run things, against a brute-force oracle.

Hypothesis generates a fleet (capacities, labels, ready or not, cordoned or not), the
allocations already on it (on random nodes, on a node since removed, within capacity
or, for some fleets, over it — a node re-registered smaller), and the demands of one
call. The oracle below replays the call demand by demand and looks at every node each
time, from nothing but the documented rules; it never calls into the scheduler's index
or its walk. What is checked, per demand:

- feasibility: the chosen node is ready, uncordoned, carries the demand's labels and
  has the CPU and memory left after the allocations and the call's earlier demands;
  a fleet that starts within capacity ends within capacity;
- spread: the chosen node holds the fewest replicas of the demand's group of any
  feasible node (so never a second replica while a feasible node has none), and,
  for the rest of the score (fewest replicas, then most memory left), the tolerance
  that sampling allows: the chosen node scores at least as well as
  min(sample_size, feasible nodes) feasible nodes, itself included; exact when the
  sample covers the fleet;
- binpack: the fullest feasible node exactly, tolerance none (binpack does not
  sample). "Fullest" is the order the index keeps: least memory left, then least
  CPU left, then the node's name;
- a demand no node takes: no node was feasible, every node is counted once under the
  first reason it fails (not ready, cordoned, a label, CPU, memory), the counts sum
  to the number of nodes, and `explain` says each count;
- determinism: the same index and demands give the same placement, whatever order the
  nodes and allocations were read in, on an index built afresh or kept with `add`,
  and a call's first k decisions are those of a call with only its first k demands.

Generation, not the scheduler, takes most of the time; the health check that times it
is off, as a wall-clock check fails at random on a shared machine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from armillary.runtime.scheduler import (
    Demand,
    NodeIndex,
    NodeInfo,
    Placed,
    Placement,
    Strategy,
    place,
)

NAMES = [f"n{i:02}" for i in range(12)]
GROUPS = ["t/web", "t/worker", "u/web"]
LABELS = {"zone": ["eu", "us"], "disk": ["ssd"]}

label_sets = st.dictionaries(
    st.sampled_from(sorted(LABELS)),
    st.sampled_from(sorted({v for vs in LABELS.values() for v in vs})),
    max_size=2,
)
# Round sizes as well as any: nodes that fill exactly, demands that fit exactly.
cpu_capacities = st.sampled_from([0, 1000, 4000]) | st.integers(0, 4000)
memory_capacities = st.sampled_from([0, 1024, 4096]) | st.integers(0, 4096)
cpu_sizes = st.sampled_from([0, 250, 1000]) | st.integers(0, 1500)
memory_sizes = st.sampled_from([0, 256, 1024]) | st.integers(0, 1500)


@st.composite
def fleets(draw: st.DrawFn) -> list[NodeInfo]:
    size = draw(st.integers(0, len(NAMES)))
    names = draw(st.permutations(NAMES))[:size]
    return [
        NodeInfo(
            name=name,
            cpu_millicores=draw(cpu_capacities),
            memory_mb=draw(memory_capacities),
            labels=draw(label_sets),
            ready=draw(st.sampled_from([True] * 7 + [False])),
            schedulable=draw(st.sampled_from([True] * 7 + [False])),
            lost=draw(st.sampled_from([False] * 7 + [True])),
        )
        for name in names
    ]


@st.composite
def allocations(draw: st.DrawFn, fleet: list[NodeInfo]) -> tuple[list[Placed], bool]:
    """Allocations on the fleet's nodes (and on "gone", a node since removed); within
    each node's capacity unless the draw says the fleet is over-committed."""
    overcommitted = draw(st.booleans())
    capacity = {n.name: (n.cpu_millicores, n.memory_mb) for n in fleet}
    used: Counter[tuple[str, str]] = Counter()
    placed: list[Placed] = []
    drawn = st.tuples(
        st.sampled_from([*capacity, "gone"]), st.sampled_from(GROUPS), cpu_sizes, memory_sizes
    )
    for node, group, cpu, memory in draw(st.lists(drawn, max_size=24)):
        if not overcommitted and node in capacity:
            cpu_total, memory_total = capacity[node]
            if used[(node, "cpu")] + cpu > cpu_total or used[(node, "mem")] + memory > memory_total:
                continue
        used[(node, "cpu")] += cpu
        used[(node, "mem")] += memory
        placed.append(Placed(node=node, group=group, cpu_millicores=cpu, memory_mb=memory))
    return placed, overcommitted


demand_lists = st.lists(
    st.builds(
        Demand,
        key=st.uuids().map(str),
        group=st.sampled_from(GROUPS[:2]),
        cpu_millicores=cpu_sizes,
        memory_mb=memory_sizes,
        node_labels=st.just({}) | label_sets,
    ),
    max_size=16,
    unique_by=lambda d: d.key,
)
strategies = st.sampled_from(["spread", "binpack"])
samples = st.sampled_from([1, 2, 3, 8, len(NAMES)])  # mostly below the fleet size


@dataclass(slots=True)
class Oracle:
    """The fleet as a full scan sees it, kept by hand as demands are placed."""

    nodes: list[NodeInfo]
    cpu_used: Counter[str]
    memory_used: Counter[str]
    replicas: Counter[str]
    held: Counter[tuple[str, str]]  # (node, group) → replicas

    @classmethod
    def of(cls, nodes: list[NodeInfo], placed: Sequence[Placed]) -> Oracle:
        oracle = cls(nodes, Counter(), Counter(), Counter(), Counter())
        for p in placed:
            oracle.take(p.node, group=p.group, cpu=p.cpu_millicores, memory=p.memory_mb)
        return oracle

    def take(self, node: str, *, group: str, cpu: int, memory: int) -> None:
        self.cpu_used[node] += cpu
        self.memory_used[node] += memory
        self.replicas[node] += 1
        self.held[(node, group)] += 1

    def reason(self, node: NodeInfo, demand: Demand) -> str | None:
        """Why `node` cannot take `demand` now (the first reason, in the documented
        order), or None when it can."""
        if node.lost:
            return "lost"
        if not node.ready:
            return "not ready"
        if not node.schedulable:
            return "cordoned"
        for key, value in demand.node_labels.items():
            if node.labels.get(key) != value:
                return f"lack label {key}={value}"
        if self.cpu_used[node.name] + demand.cpu_millicores > node.cpu_millicores:
            return "have too little CPU"
        if self.memory_used[node.name] + demand.memory_mb > node.memory_mb:
            return "have too little memory"
        return None

    def memory_left(self, node: NodeInfo) -> int:
        return node.memory_mb - self.memory_used[node.name]

    def cpu_left(self, node: NodeInfo) -> int:
        return node.cpu_millicores - self.cpu_used[node.name]

    def fullness(self, node: NodeInfo) -> tuple[int, int, str]:
        """binpack's order, fullest first: least memory left, least CPU left, name."""
        return (self.memory_left(node), self.cpu_left(node), node.name)

    def spread_score(self, node: NodeInfo, group: str) -> tuple[int, int, int]:
        """spread's order, best first: fewest of the group, fewest replicas, most memory."""
        return (self.held[(node.name, group)], self.replicas[node.name], -self.memory_left(node))


def replay(
    infos: list[NodeInfo],
    placed: list[Placed],
    demands: list[Demand],
    placement: Placement,
    *,
    strategy: Strategy,
    sample_size: int,
) -> Oracle:
    """Checks each decision of `placement` against a full scan; the fleet after it."""
    assert set(placement.assigned) | set(placement.unplaced) == {d.key for d in demands}
    assert not set(placement.assigned) & set(placement.unplaced)
    oracle = Oracle.of(infos, placed)
    for demand in demands:
        verdicts = {n.name: oracle.reason(n, demand) for n in infos}
        feasible = [n for n in infos if verdicts[n.name] is None]
        chosen = placement.assigned.get(demand.key)
        if chosen is None:
            check_refusal(placement, demand, verdicts, feasible)
            continue
        assert chosen in verdicts, "placed on a node the fleet does not have"
        assert verdicts[chosen] is None, f"{chosen}: {verdicts[chosen]}"
        node = next(n for n in infos if n.name == chosen)
        if strategy == "spread":
            check_spread(oracle, node, demand, feasible, sample_size)
        else:
            assert chosen == min(feasible, key=oracle.fullness).name  # tolerance: none
        oracle.take(chosen, group=demand.group, cpu=demand.cpu_millicores, memory=demand.memory_mb)
    return oracle


def check_spread(
    oracle: Oracle, node: NodeInfo, demand: Demand, feasible: list[NodeInfo], sample_size: int
) -> None:
    group = demand.group
    fewest = min(oracle.held[(n.name, group)] for n in feasible)
    assert oracle.held[(node.name, group)] == fewest, "a feasible node holds fewer of the group"
    score = oracle.spread_score(node, group)
    no_better = [n for n in feasible if oracle.spread_score(n, group) >= score]
    assert len(no_better) >= min(sample_size, len(feasible))
    if sample_size >= len(feasible):
        assert score == min(oracle.spread_score(n, group) for n in feasible)


def check_refusal(
    placement: Placement,
    demand: Demand,
    verdicts: dict[str, str | None],
    feasible: list[NodeInfo],
) -> None:
    assert not feasible, f"refused while {[n.name for n in feasible]} could take it"
    counts = placement.unplaced[demand.key]
    assert counts == Counter(verdicts.values())
    assert sum(counts.values()) == len(verdicts)
    said = placement.explain(demand.key)
    if verdicts:
        assert all(f"{count} node(s) {why}" in said for why, count in counts.items())
    else:
        assert said == "no nodes are registered"


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), fleets(), demand_lists, strategies, samples)
def test_every_decision_matches_a_full_scan_of_the_fleet(
    data: st.DataObject,
    infos: list[NodeInfo],
    demands: list[Demand],
    strategy: Strategy,
    sample_size: int,
) -> None:
    placed, overcommitted = data.draw(allocations(infos))
    placement = place(NodeIndex.build(infos, placed), demands, strategy, sample_size=sample_size)
    after = replay(infos, placed, demands, placement, strategy=strategy, sample_size=sample_size)
    if not overcommitted:
        for n in infos:
            assert after.cpu_left(n) >= 0 and after.memory_left(n) >= 0, n.name


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), fleets(), demand_lists, strategies, samples)
def test_placement_is_deterministic_and_decided_in_order(
    data: st.DataObject,
    infos: list[NodeInfo],
    demands: list[Demand],
    strategy: Strategy,
    sample_size: int,
) -> None:
    placed, _ = data.draw(allocations(infos))
    index = NodeIndex.build(infos, placed)
    placement = place(index, demands, strategy, sample_size=sample_size)
    assert index == NodeIndex.build(infos, placed), "place() changed the index"
    assert placement == place(index, demands, strategy, sample_size=sample_size)
    shuffled = data.draw(st.permutations(infos)), data.draw(st.permutations(placed))
    assert placement == place(
        NodeIndex.build(*shuffled), demands, strategy, sample_size=sample_size
    )
    kept = NodeIndex.build(infos, [])
    for p in placed:
        kept.add(p)
    assert placement == place(kept, demands, strategy, sample_size=sample_size)
    k = data.draw(st.integers(0, len(demands)))
    first = place(index, demands[:k], strategy, sample_size=sample_size)
    keys = {d.key for d in demands[:k]}
    assert first.assigned == {d: n for d, n in placement.assigned.items() if d in keys}
    assert first.unplaced == {d: r for d, r in placement.unplaced.items() if d in keys}


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), fleets())
def test_an_index_kept_with_add_and_remove_equals_one_built_afresh(
    data: st.DataObject, infos: list[NodeInfo]
) -> None:
    before, _ = data.draw(allocations(infos))
    after, _ = data.draw(allocations(infos))
    index = NodeIndex.build(infos, before)
    for p in after:
        index.add(p)
    assert index == NodeIndex.build(infos, [*before, *after])
    for p in after:
        index.remove(p)
    assert index == NodeIndex.build(infos, before)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(2, len(NAMES)),
    st.data(),
    st.sampled_from([1, 2, 3]),
    st.lists(st.uuids().map(str), min_size=1, max_size=4, unique=True),
)
def test_spread_walks_past_a_full_sample_to_a_node_without_the_group(
    size: int, data: st.DataObject, sample_size: int, keys: list[str]
) -> None:
    """The case the general property rarely draws: the group already on most of the
    fleet, so the first `sample_size` feasible nodes of a walk all hold it and only
    walking on finds the nodes without it (which every later replica must fill)."""
    infos = [NodeInfo(name=n, cpu_millicores=4000, memory_mb=4096) for n in NAMES[:size]]
    lacking = data.draw(st.sets(st.sampled_from(NAMES[:size]), min_size=1, max_size=size - 1))
    placed = [Placed(node=n.name, group="t/web") for n in infos if n.name not in lacking]
    demands = [Demand(key=key, group="t/web", memory_mb=1) for key in keys]
    placement = place(NodeIndex.build(infos, placed), demands, "spread", sample_size=sample_size)
    replay(infos, placed, demands, placement, strategy="spread", sample_size=sample_size)
    taken = [placement.assigned[key] for key in keys]
    assert set(taken[: len(lacking)]) <= lacking  # each on a node without the group
    assert len(set(taken[: len(lacking)])) == min(len(keys), len(lacking))
