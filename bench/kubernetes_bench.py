"""API requests and time per tenant apply on the kubernetes runtime: the every-field
stack of examples/kubernetes for N tenants, applied by `KubernetesRuntime` to kmock's
Kubernetes API emulator (tests/support/kubernetes.py, its gaps filled there; no API
server can be installed here, so times are the emulator's, not a cluster's). In the
same run:

- render (the floor): each tenant's objects, nothing sent;
- first apply: every tenant converged once on an empty cluster (one request per
  object, plus the read of the tenant's ApplySet parent);
- again, unchanged: every tenant converged again (nothing changed: no request);
- one change: one component's env changed in every tenant (one request each).

    .venv/bin/python bench/kubernetes_bench.py [--tenants 20] [--json FILE]

Requests are counted by the runtime (`KubernetesRuntime.requests`) and checked
against the emulator's own log; watches are not per apply and are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the emulator lives with the tests' support code

from tests.support.kubernetes import FakeCluster  # noqa: E402

from armillary.resources import loader  # noqa: E402
from armillary.resources.schedule import Schedule  # noqa: E402
from armillary.resources.tenant import Tenant  # noqa: E402
from armillary.runtime.instance import Instance  # noqa: E402
from armillary.runtime.kubernetes import inputs  # noqa: E402
from armillary.runtime.kubernetes.model import Cluster, TenantView  # noqa: E402
from armillary.runtime.kubernetes.render import render_tenant  # noqa: E402
from armillary.runtime.kubernetes.runtime import Access, KubernetesRuntime  # noqa: E402

EXAMPLE = ROOT / "examples" / "kubernetes"


def views(tenants: int) -> dict[str, TenantView]:
    docs = [item.resource for item in loader.load_paths([str(EXAMPLE)])]
    [tenant] = [d for d in docs if isinstance(d, Tenant)]
    others = [d for d in docs if not isinstance(d, Tenant | Schedule)]
    copies = [
        tenant.model_copy(
            update={"metadata": tenant.metadata.model_copy(update={"name": f"tenant-{i:05d}"})}
        )
        for i in range(tenants)
    ]
    found, refusals = inputs.views([*others, *copies])
    assert not refusals, refusals
    return {v.tenant: v for v in found}


async def measure(fake: FakeCluster, tenants: int) -> list[dict[str, Any]]:
    by_tenant = views(tenants)

    async def view(name: str, instance: Instance) -> TenantView:
        return dataclasses.replace(by_tenant[name], instance=instance)

    runtime = KubernetesRuntime(
        cluster="bench",
        settings=Cluster(),
        access=Access(kubeconfig=fake.kubeconfig()),
        view=view,
        publish=lambda _change: None,
    )
    now = dt.datetime.now(dt.UTC)
    instances = {n: runtime.prepare(v.instance) for n, v in by_tenant.items()}
    runnable = {
        n: dataclasses.replace(
            by_tenant[n],
            instance=Instance(
                tenant=n,
                templates=tuple(t for t in i.templates if t.image and t.problem is None),
            ),
        )
        for n, i in instances.items()
    }
    objects = {n: len(render_tenant(v, cluster=Cluster())) for n, v in runnable.items()}
    rows = []

    def row(phase: str, wall_s: float, cpu_s: float, requests: list[int]) -> None:
        rows.append(
            {
                "phase": phase,
                "tenants": tenants,
                "objects_per_tenant": max(objects.values()),
                "requests_per_tenant_max": max(requests),
                "requests_total": sum(requests),
                "wall_s": wall_s,
                "cpu_s": cpu_s,
            }
        )

    wall, cpu = time.perf_counter(), time.process_time()
    for v in runnable.values():
        render_tenant(v, cluster=Cluster())
    row("render (floor)", time.perf_counter() - wall, time.process_time() - cpu, [0])

    async def converge_all(phase: str, change: dict[str, str] | None = None) -> None:
        counts = []
        wall, cpu = time.perf_counter(), time.process_time()
        for name, instance in instances.items():
            if change:
                first, *rest = instance.templates
                first = dataclasses.replace(first, env={**first.env, **change})
                instance = Instance(tenant=name, templates=(first, *rest))
            outcome = await runtime.converge(name, instance, now=now)
            assert outcome.problem is None, outcome.problem
            counts.append(runtime.requests[name])
        row(phase, time.perf_counter() - wall, time.process_time() - cpu, counts)

    before = len(fake.requests_by_runtime())
    await converge_all("first apply")
    logged = len(fake.requests_by_runtime()) - before
    assert logged == rows[-1]["requests_total"], (logged, rows[-1])
    await converge_all("again, unchanged")
    await converge_all("one change", {"BENCH": "1"})
    await runtime.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    with FakeCluster(controllers=False) as fake:  # nothing to observe: requests only
        rows = asyncio.run(measure(fake, args.tenants))
    head = f"{'phase':<18} {'tenants':>7} {'objects/t':>9} {'req/t max':>9} {'requests':>8}"
    print(f"{head} {'wall s':>7} {'CPU s':>6}")
    for r in rows:
        print(
            f"{r['phase']:<18} {r['tenants']:>7} {r['objects_per_tenant']:>9} "
            f"{r['requests_per_tenant_max']:>9} {r['requests_total']:>8} "
            f"{r['wall_s']:>7.3f} {r['cpu_s']:>6.3f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
