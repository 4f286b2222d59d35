"""Placement of replicas onto nodes: pure, deterministic, explainable.

`place(nodes, allocations, demands, strategy)` runs each demand through
feasibility (node ready and schedulable, labels required, CPU and memory left)
and then scoring — `spread` prefers the node holding the fewest replicas of the
same tenant's component, then the fewest replicas overall; `binpack` prefers the
node with the least room left — with ties broken round-robin by demand order, so
the same input always gives the same placement. A demand no node can take is
returned with the count of nodes rejected per reason, so "could not place" can
say why. Nothing here reads a clock or the store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Strategy = Literal["spread", "binpack"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    name: str
    cpu_millicores: int
    memory_mb: int
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: bool = True  # connected and heartbeating
    schedulable: bool = True  # not cordoned


@dataclass(frozen=True, slots=True, kw_only=True)
class Demand:
    key: str
    group: str  # replicas of one group (a tenant's component) are spread apart
    cpu_millicores: int = 0
    memory_mb: int = 0
    node_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Placed:
    """Something already on a node, taking its share."""

    node: str
    group: str
    cpu_millicores: int = 0
    memory_mb: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    assigned: dict[str, str]  # demand key → node name
    unplaced: dict[str, dict[str, int]]  # demand key → reason → number of nodes rejected

    def explain(self, key: str) -> str:
        reasons = self.unplaced.get(key, {})
        if not reasons:
            return "no nodes are registered"
        parts = [f"{count} node(s) {reason}" for reason, count in sorted(reasons.items())]
        return "no node fits: " + ", ".join(parts)


def place(
    nodes: Sequence[NodeInfo],
    allocations: Sequence[Placed],
    demands: Sequence[Demand],
    strategy: Strategy = "spread",
) -> Placement:
    """Assign each demand to a node, in order, accounting for earlier assignments."""
    ordered = sorted(nodes, key=lambda n: n.name)
    used_cpu: Counter[str] = Counter()
    used_memory: Counter[str] = Counter()
    per_group: Counter[tuple[str, str]] = Counter()
    per_node: Counter[str] = Counter()
    for placed in allocations:
        used_cpu[placed.node] += placed.cpu_millicores
        used_memory[placed.node] += placed.memory_mb
        per_group[(placed.node, placed.group)] += 1
        per_node[placed.node] += 1
    assigned: dict[str, str] = {}
    unplaced: dict[str, dict[str, int]] = {}
    for turn, demand in enumerate(demands):
        feasible: list[NodeInfo] = []
        rejected: Counter[str] = Counter()
        for node in ordered:
            reason = _infeasible(node, demand, used_cpu[node.name], used_memory[node.name])
            if reason is None:
                feasible.append(node)
            else:
                rejected[reason] += 1
        if not feasible:
            unplaced[demand.key] = dict(rejected)
            continue

        def score(node: NodeInfo, demand: Demand = demand) -> tuple[int, ...]:
            free_cpu = node.cpu_millicores - used_cpu[node.name] - demand.cpu_millicores
            free_memory = node.memory_mb - used_memory[node.name] - demand.memory_mb
            if strategy == "binpack":
                return (free_memory, free_cpu)
            return (per_group[(node.name, demand.group)], per_node[node.name], -free_memory)

        best = min(score(n) for n in feasible)
        tied = [n for n in feasible if score(n) == best]
        chosen = tied[turn % len(tied)]
        assigned[demand.key] = chosen.name
        used_cpu[chosen.name] += demand.cpu_millicores
        used_memory[chosen.name] += demand.memory_mb
        per_group[(chosen.name, demand.group)] += 1
        per_node[chosen.name] += 1
    return Placement(assigned=assigned, unplaced=unplaced)


def _infeasible(node: NodeInfo, demand: Demand, cpu_used: int, memory_used: int) -> str | None:
    if not node.ready:
        return "not ready"
    if not node.schedulable:
        return "cordoned"
    for key, value in demand.node_labels.items():
        if node.labels.get(key) != value:
            return f"lack label {key}={value}"
    if cpu_used + demand.cpu_millicores > node.cpu_millicores:
        return "have too little CPU"
    if memory_used + demand.memory_mb > node.memory_mb:
        return "have too little memory"
    return None
