"""How long `armillary render` takes for many tenants: the every-field stack of
examples/kubernetes (six components, two schedules, two Secrets, a quota) rendered for
N tenants, in the same run:

- expand (the floor): documents → one expanded instance per tenant (`inputs.views`,
  which is `runtime.expand` per tenant), nothing rendered;
- render: the same, then the Kubernetes objects (`render`);
- render + JSON / render + YAML: then the bytes `render -o json` / `-o yaml` print.

    .venv/bin/python bench/render_bench.py [--tenants 1000] [--repeat 3] [--json FILE]

Each figure is the best of --repeat runs (the machine is shared: the best run is the
one least disturbed); compare rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from armillary.resources import loader
from armillary.resources.meta import Document
from armillary.resources.schedule import Schedule
from armillary.resources.tenant import Tenant
from armillary.runtime.kubernetes import inputs, manifest
from armillary.runtime.kubernetes.model import Cluster
from armillary.runtime.kubernetes.render import render

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kubernetes"


def documents(tenants: int) -> list[Document[Any]]:
    """The example's documents with its one Tenant copied `tenants` times."""
    docs = [item.resource for item in loader.load_paths([str(EXAMPLE)])]
    [tenant] = [d for d in docs if isinstance(d, Tenant)]
    others = [d for d in docs if not isinstance(d, Tenant | Schedule)]
    copies = [
        tenant.model_copy(
            update={"metadata": tenant.metadata.model_copy(update={"name": f"tenant-{i:05d}"})}
        )
        for i in range(tenants)
    ]
    return [*others, *copies]


def best_s(work: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeat` runs. CPU time leaves out the
    time spent waiting for a core, which on a shared machine is most of the wall time."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    docs = documents(args.tenants)
    cluster = Cluster()

    def expand() -> object:
        return inputs.views(docs)

    def objects() -> list[dict[str, Any]]:
        return render(inputs.views(docs)[0], cluster=cluster)

    count = len(objects())
    phases: list[tuple[str, Callable[[], object]]] = [
        ("expand (floor)", expand),
        ("render", objects),
        ("render + JSON", lambda: manifest.to_json(objects())),
        ("render + YAML", lambda: manifest.to_yaml(objects())),
    ]
    rows = []
    for name, work in phases:
        wall_s, cpu_s = best_s(work, args.repeat)
        rows.append(
            {
                "phase": name,
                "tenants": args.tenants,
                "objects": count,
                "wall_s": wall_s,
                "cpu_s": cpu_s,
            }
        )
    floor_s = rows[0]["cpu_s"]
    print(f"{'phase':<16} {'tenants':>8} {'objects':>8} {'wall s':>8} {'CPU s':>8} {'x floor':>8}")
    for row in rows:
        print(
            f"{row['phase']:<16} {row['tenants']:>8} {row['objects']:>8} "
            f"{row['wall_s']:>8.3f} {row['cpu_s']:>8.3f} {row['cpu_s'] / floor_s:>8.1f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
