"""Benchmark: `GET /metrics` at fleet size — what one scrape costs and weighs.

Run:  .venv/bin/python bench/metrics_bench.py [--backend sqlite|postgres|both]
          [--tenants 1000] [--replicas-per-tenant 3] [--nodes 30] [--scrapes 30]

A fresh store (SQLite in a temporary directory; Postgres: a fresh database, dropped
afterwards) is migrated and filled directly, in bulk: `--tenants` Tenant resources
with a status as the tenant controller writes it (three conditions, replica counts,
one entry per component), `--replicas-per-tenant` allocations each with a spec and a
node's report (a few in crashloop and backoff), a rollout revision per component,
`--nodes` nodes, 10 agent runs per tenant and a provisioning run per tenant. Then
`armillary.api.routes.metrics.exposition(db)` — everything the route does after the
caller is identified: the store's GROUP BY counts and narrow column reads in one read
transaction, and prometheus-client's text of every family — runs `--scrapes` times,
timed from the call to the last byte. The first scrape warms the pools and is not
counted. Printed: p50 / p95 / max ms and the answer's size.

The HTTP layer around it adds a fixed cost (the key's lookup, the response); it does
not grow with the fleet.

Then what metrics add to each webhook delivery, in CPU time, measured in-process so
that nothing else on the machine moves it: an ASGI request through `Measure` around a
stub app that answers 202 at once, against the stub alone, plus the delivery's
outcome counter (`webhooks.count`); the best of `--overhead-rounds` runs of 20,000
requests each. Compare with the server CPU per delivery bench/ingress_bench.py
prints.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from procs import POSTGRES_URL, machine, pg_admin
from sqlalchemy import insert

from armillary.api.routes import metrics as metrics_route
from armillary.store.database import Database
from armillary.store.tables import (
    agent_runs,
    allocations,
    nodes,
    provision_runs,
    resources,
    rollouts,
)

NOW = dt.datetime.now(dt.UTC)
RUN_STATES = ("succeeded",) * 7 + ("queued", "failed", "dead")


def tenant_status(name: str, components: int, degraded: bool) -> dict[str, Any]:
    def condition(kind: str, value: bool, reason: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": "True" if value else "False",
            "reason": reason,
            "message": f"{components}/{components} replicas ready",
            "lastTransitionTime": NOW.isoformat(),
        }

    return {
        "observedGeneration": 1,
        "replicas": {"desired": components, "ready": components, "updated": components},
        "components": [
            {"name": f"c{i}", "desired": 1, "ready": 1, "updated": 1, "revision": 1}
            for i in range(components)
        ],
        "conditions": [
            condition("Ready", not degraded, "AllReplicasReady"),
            condition("Progressing", False, "Converged"),
            condition("Degraded", degraded, "ReplicasFailing" if degraded else "None"),
        ],
    }


def rows(args: argparse.Namespace) -> dict[Any, list[dict[str, Any]]]:
    node_names = [f"node-{i:03d}" for i in range(args.nodes)]
    out: dict[Any, list[dict[str, Any]]] = {t: [] for t in (nodes, resources, allocations)}
    out |= {rollouts: [], agent_runs: [], provision_runs: []}
    for name in node_names:
        out[nodes].append(
            {
                "name": name,
                "address": "127.0.0.1",
                "labels": {},
                "capacity": {"cpu_millicores": 64000, "memory_mb": 262144},
                "usage": {"cpu_percent": 12.5, "memory_used_mb": 1000, "memory_total_mb": 262144},
                "schedulable": True,
                "connected": True,
                "epoch": 1,
                "registered_at": NOW,
                "heartbeat_at": NOW,
            }
        )
    per = args.replicas_per_tenant
    for t in range(args.tenants):
        tenant = f"tenant-{t:05d}"
        degraded = t % 97 == 0
        out[resources].append(
            {
                "kind": "Tenant",
                "name": tenant,
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "resource_version": t + 1,
                "labels": {"org": "acme"},
                "annotations": {},
                "spec": {"org": "acme", "stack": "web", "env": {"TIER": "standard"}},
                "status": tenant_status(tenant, per, degraded),
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
        for c in range(per):
            state = "crashloop" if degraded and c == 0 else "running"
            spec = {
                "command": ["python3", "app.py", "--port", "${PORT_HTTP}"],
                "env": {"TENANT": tenant, "COMPONENT": f"c{c}"},
                "ports": [{"name": "http", "port": 0}],
                "resources": {"cpu_millicores": 100, "memory_mb": 128},
            }
            out[allocations].append(
                {
                    "id": str(uuid.uuid4()),
                    "tenant": tenant,
                    "component": f"c{c}",
                    "replica": 0,
                    "node": node_names[(t * per + c) % len(node_names)],
                    "spec_hash": secrets.token_hex(32),
                    "spec": spec,
                    "report": {
                        "id": "x",
                        "state": state,
                        "pid": 1000 + c,
                        "restarts": 7 if state == "crashloop" else 0,
                        "healthy": state == "running",
                        "ports": {"http": 20000 + c},
                        "started_at": NOW.timestamp(),
                    },
                    "created_at": NOW,
                    "reported_at": NOW,
                }
            )
            out[rollouts].append(
                {
                    "tenant": tenant,
                    "component": f"c{c}",
                    "revision": 1,
                    "template_hash": secrets.token_hex(32),
                    "template": spec,
                    "state": "complete",
                    "started_at": NOW,
                    "finished_at": NOW,
                }
            )
        for r in range(10):
            out[agent_runs].append(
                {
                    "id": str(uuid.uuid4()),
                    "tenant": tenant,
                    "component": "agent",
                    "input": {"n": r},
                    "requested_by": "webhook:github",
                    "state": RUN_STATES[r],
                    "attempts": 1,
                    "max_attempts": 5,
                    "next_attempt_at": NOW,
                    "created_at": NOW,
                    "history": [],
                }
            )
        out[provision_runs].append(
            {
                "id": str(uuid.uuid4()),
                "action": "provision",
                "org": "acme",
                "tenant": tenant,
                "request": {"tenant": tenant},
                "state": "succeeded",
                "created_at": NOW,
            }
        )
    return out


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    db = await Database.open(url)
    try:
        filled = rows(args)
        async with db.write() as conn:
            for table, values in filled.items():
                for i in range(0, len(values), 500):
                    await conn.execute(insert(table), values[i : i + 500])
        body = await metrics_route.exposition(db)  # warm-up: pools, statements
        times = []
        for _ in range(args.scrapes):
            began = time.perf_counter()
            body = await metrics_route.exposition(db)
            times.append((time.perf_counter() - began) * 1000)
    finally:
        await db.close()
    times.sort()
    return {
        "tenants": args.tenants,
        "replicas": len(filled[allocations]),
        "p50_ms": statistics.median(times),
        "p95_ms": times[int(len(times) * 0.95) - 1],
        "max_ms": times[-1],
        "bytes": len(body),
        "series": sum(1 for line in body.splitlines() if line and not line.startswith(b"#")),
    }


async def overhead(rounds: int, n: int = 20_000) -> dict[str, float]:
    """µs of CPU per request: the stub alone, and through `Measure` plus the count."""
    from armillary.api.measure import Measure
    from armillary.api.routes import webhooks

    async def stub(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    answer = webhooks.Answer(202, {"event": "e", "state": "routed"})

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        await stub(scope, receive, send)
        webhooks.count("github-bench", answer)

    measured = Measure(counted)
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, app in (("bare", stub), ("measured", measured)):
            scope = {"type": "http", "method": "POST", "path": "/webhooks/github-bench"}
            began = time.process_time()
            for _ in range(n):
                await app(dict(scope), receive, send)
            us = (time.process_time() - began) / n * 1e6
            best[name] = min(best.get(name, us), us)
    best["added"] = best["measured"] - best["bare"]
    return best


def run(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="armillary-metrics-") as tmp:
            return asyncio.run(measure(f"sqlite:///{Path(tmp) / 'store.db'}", args))
    dbname = f"armillary_bench_{secrets.token_hex(4)}"
    asyncio.run(pg_admin(f'CREATE DATABASE "{dbname}"'))
    try:
        return asyncio.run(measure(POSTGRES_URL.rsplit("/", 1)[0] + f"/{dbname}", args))
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--replicas-per-tenant", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--overhead-rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {"machine": machine()}
    print("| store | tenants | replicas | p50 ms | p95 ms | max ms | bytes | samples |")
    print("|---|---|---|---|---|---|---|---|")
    for backend in backends:
        r = results[backend] = run(backend, args)
        print(
            f"| {backend} | {r['tenants']:,} | {r['replicas']:,} | {r['p50_ms']:.1f} "
            f"| {r['p95_ms']:.1f} | {r['max_ms']:.1f} | {r['bytes']:,} | {r['series']:,} |",
            flush=True,
        )
    cost = results["overhead"] = asyncio.run(overhead(args.overhead_rounds))
    print(
        f"\nper delivery, CPU: stub ASGI app {cost['bare']:.1f} µs; through Measure with the "
        f"outcome counted {cost['measured']:.1f} µs; metrics add {cost['added']:.1f} µs"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if any(results[b]["p95_ms"] >= 100 or results[b]["bytes"] >= 1_000_000 for b in backends):
        sys.exit("over budget: /metrics must answer in < 100 ms and < 1 MB")


if __name__ == "__main__":
    main()
