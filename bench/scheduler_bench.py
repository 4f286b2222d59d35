"""Benchmark: the scheduler alone, `place()` on a fleet with existing allocations.

Run:  .venv/bin/python bench/scheduler_bench.py [--nodes 1000] [--allocations 100000]
          [--strategy spread|binpack|both] [--placements 30000] [--replicas 3]
          [--sample-size 8] [--full-scan-calls 50] [--seed 1] [--json FILE]

A fleet of --nodes nodes (capacities of 16/32/64 cores and 64/128/256 GiB, a `zone`
label of three, 1 % cordoned, 1 % not ready) holds --allocations replicas, in groups of
three, put on random nodes. The index is built once from them (timed apart: it is what a
caller pays when it builds the index per step from what it read). Then tenants of
--replicas replicas each are placed, one `place()` call per tenant as the nodes runtime
makes it, a tenth of them asking for a zone, until --placements replicas; after each call
its replicas are added to the index (not timed). Only the `place()` calls are timed.

Measured in the same run, as floors and reference:
  dict lookup per node    one dict lookup per node per placement: the least any
                          scheduler that looks at every node pays, whatever it scores
  full scan (before)      the `place()` this one replaced, kept here verbatim: every
                          node scored for every replica, and the allocations counted
                          on each call; on --full-scan-calls calls
Quality of the result: for spread, the replicas per eligible node at the end (min, max)
and groups with two replicas on one node; for binpack, the nodes the run's replicas use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from armillary.runtime import scheduler
from armillary.runtime.scheduler import Demand, NodeIndex, NodeInfo, Placed, Placement

ZONES = ("a", "b", "c")
CPUS = (50, 100, 200)
MEMORIES = (128, 256, 512)


# --------------------------------------------------------------------------- the fleet
def fleet(rng: random.Random, count: int) -> list[NodeInfo]:
    nodes = []
    for i in range(count):
        size = rng.choice((1, 2, 4))
        roll = rng.random()
        nodes.append(
            NodeInfo(
                name=f"node-{i:05}",
                cpu_millicores=16000 * size,
                memory_mb=65536 * size,
                labels={"zone": ZONES[i % 3]},
                ready=roll >= 0.01,
                schedulable=not 0.01 <= roll < 0.02,
            )
        )
    return nodes


def existing(rng: random.Random, nodes: list[NodeInfo], count: int) -> list[Placed]:
    names = [n.name for n in nodes]
    placed = []
    for i in range(count):
        cpu, memory = rng.choice(CPUS), rng.choice(MEMORIES)
        node = rng.choice(names)
        placed.append(
            Placed(node=node, group=f"old-{i // 3}/web", cpu_millicores=cpu, memory_mb=memory)
        )
    return placed


def tenants(rng: random.Random, placements: int, replicas: int) -> list[list[Demand]]:
    out = []
    for t in range((placements + replicas - 1) // replicas):
        cpu, memory = rng.choice(CPUS), rng.choice(MEMORIES)
        labels = {"zone": rng.choice(ZONES)} if rng.random() < 0.1 else {}
        out.append(
            [
                Demand(
                    key=f"web/{r}",
                    group=f"tenant-{t}/web",
                    cpu_millicores=cpu,
                    memory_mb=memory,
                    node_labels=labels,
                )
                for r in range(replicas)
            ]
        )
    return out


# --------------------------------------------------------------------------- the reference
def full_scan_place(
    nodes: Sequence[NodeInfo],
    allocations: Sequence[Placed],
    demands: Sequence[Demand],
    strategy: str = "spread",
) -> Placement:
    """The `place()` before the node index, verbatim but for names."""
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
            reason = scheduler._infeasible(
                node,
                demand,
                cpu_free=node.cpu_millicores - used_cpu[node.name],
                memory_free=node.memory_mb - used_memory[node.name],
            )
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


# --------------------------------------------------------------------------- runs
def run(args: argparse.Namespace, strategy: str) -> dict[str, Any]:
    rng = random.Random(args.seed)
    nodes = fleet(rng, args.nodes)
    placed = existing(rng, nodes, args.allocations)
    work = tenants(rng, args.placements, args.replicas)

    t0 = time.perf_counter()
    index = NodeIndex.build(nodes, placed)
    build_s = time.perf_counter() - t0

    timed_s, done, refused, calls = 0.0, 0, 0, []
    mine: list[Placed] = []
    for demands in work:
        t0 = time.perf_counter()
        placement = scheduler.place(index, demands, strategy, sample_size=args.sample_size)  # type: ignore[arg-type]
        took = time.perf_counter() - t0
        timed_s += took
        calls.append(took)
        refused += len(placement.unplaced)
        for d in demands:
            if (node := placement.assigned.get(d.key)) is not None:
                p = Placed(
                    node=node, group=d.group, cpu_millicores=d.cpu_millicores, memory_mb=d.memory_mb
                )
                index.add(p)
                mine.append(p)
                done += 1
    calls.sort()

    # Floor: one dict lookup per node per placement.
    names = [n.name for n in nodes]
    free = dict(index.free_memory)
    lookups = min(done, 2000)
    t0 = time.perf_counter()
    for _ in range(lookups):
        for name in names:
            free[name]
    floor_s = (time.perf_counter() - t0) / lookups

    # Reference: the full scan this replaced, on the state the run ended with.
    everything = [*placed, *mine]
    scan_work = work[: args.full_scan_calls]
    t0 = time.perf_counter()
    for demands in scan_work:
        full_scan_place(nodes, everything, demands, strategy)
    scan_s = time.perf_counter() - t0
    scan_placements = sum(len(d) for d in scan_work)

    eligible = [n.name for n in nodes if n.ready and n.schedulable]
    per_node = [index.replicas[n] for n in eligible]
    ours = Counter((p.node, p.group) for p in mine)
    return {
        "strategy": strategy,
        "nodes": args.nodes,
        "allocations": args.allocations,
        "sample_size": args.sample_size if strategy == "spread" else None,
        "placements": done,
        "refused": refused,
        "calls": len(work),
        "placements_per_s": done / timed_s,
        "us_per_placement": 1e6 * timed_s / done,
        "call_p50_us": 1e6 * calls[len(calls) // 2],
        "call_p99_us": 1e6 * calls[min(len(calls) - 1, int(0.99 * len(calls)))],
        "index_build_ms": 1000 * build_s,
        "floor_lookup_per_node_placements_per_s": 1 / floor_s,
        "full_scan_placements_per_s": scan_placements / scan_s if scan_s else None,
        "full_scan_placements": scan_placements,
        "replicas_per_node_min": min(per_node),
        "replicas_per_node_max": max(per_node),
        "replicas_per_node_stdev": statistics.pstdev(per_node),
        "groups_doubled_on_a_node": sum(1 for c in ours.values() if c > 1),
        "nodes_used_by_run": len({p.node for p in mine}),
    }


def table(results: list[dict[str, Any]]) -> str:
    out = [
        "| strategy | nodes | allocations | placements/s | µs/placement | call p99 µs | "
        "floor: dict lookup per node /s | full scan (before) /s | index build ms | "
        "replicas per node min–max | groups doubled | nodes used |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        scan = r["full_scan_placements_per_s"]
        out.append(
            f"| {r['strategy']} | {r['nodes']:,} | {r['allocations']:,} "
            f"| **{r['placements_per_s']:,.0f}** | {r['us_per_placement']:.1f} "
            f"| {r['call_p99_us']:.0f} | {r['floor_lookup_per_node_placements_per_s']:,.0f} "
            f"| {'–' if scan is None else f'{scan:,.0f}'} | {r['index_build_ms']:.0f} "
            f"| {r['replicas_per_node_min']}–{r['replicas_per_node_max']} "
            f"| {r['groups_doubled_on_a_node']} | {r['nodes_used_by_run']:,} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--allocations", type=int, default=100_000, help="existing, before the run")
    parser.add_argument("--strategy", choices=["spread", "binpack", "both"], default="both")
    parser.add_argument("--placements", type=int, default=30_000, help="replicas to place")
    parser.add_argument("--replicas", type=int, default=3, help="replicas per place() call")
    parser.add_argument("--sample-size", type=int, default=scheduler.SAMPLE_SIZE)
    parser.add_argument("--full-scan-calls", type=int, default=50, help="calls of the old place()")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    strategies = ["spread", "binpack"] if args.strategy == "both" else [args.strategy]
    results = [run(args, s) for s in strategies]
    print(table(results), flush=True)
    if args.json:
        machine = {
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
            "loadavg_before": os.getloadavg(),
        }
        doc = {"machine": machine, "options": {k: str(v) for k, v in vars(args).items()}}
        args.json.write_text(json.dumps({**doc, "results": results}, indent=2))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), ""
            )
    except OSError:
        return ""


if __name__ == "__main__":
    main()
