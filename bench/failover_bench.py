"""Benchmark: how long failures take to heal, per scenario, median of N rounds.

Run:  .venv/bin/python bench/failover_bench.py [--scenario node leader] [--rounds 10]
          [--backend sqlite|postgres] [--replicas 2] [--poll-s 0.02] [--json FILE]

Scenarios (`SCENARIOS`; each is a function that returns table rows, so another is
one more entry):

  node   A machine dies: a real server and two real node daemons (`a`, `b`) on
         loopback; a tenant with --replicas `sleep` replicas placed on `a` (`b`
         cordoned while they are placed). The machine's death is SIGSTOP of `a`'s
         daemon and of every replica process on it (its socket stays open, nothing is
         said). Timed: from the SIGSTOP until GET /api/v1/replicas shows every
         replica `running` on `b` (polled every 50 ms). Then SIGCONT, `a` must come
         back Ready and its stale copies must end before the next round. Run once per
         setting: `default` (the server's defaults: node_lost_after_s 6, heartbeats
         every 1 s) and `fastest` (the fastest documented: node_lost_after_s 2,
         heartbeats every 0.5 s), each on a fresh server.
         The floor, in the same run and on the same server: the same replicas applied
         as a new tenant with `b` the only node that takes work, from the apply's
         answer until they run on `b` — what a replacement costs once the loss is
         known. failover − window − floor is what detection adds beyond its window.

  leader Two server replicas on one fresh Postgres database: kill -9 of the leader
         (then a clean stop), timed until the survivor's first act as leader. It
         lives in bench/leader_failover.py; its table is printed on its own.

A server that starts gives every node its window plus `START_GRACE_S` (10 s) to
reconnect: rounds start after that.

Every process is stopped at the end (the daemons stop their replicas on exit; any
process left carrying this run's BENCH_TAG is killed and counted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import leader_failover
from procs import (
    POSTGRES_URL,
    children,
    free_port,
    machine,
    pg_admin,
    ready,
    server_env,
    start_server,
    stop,
    tagged,
)

from armillary.control import node_loss

POLL_S = 0.05
NODE_SETTINGS = {
    "default": {},
    "fastest": {"ARMILLARY_NODE_LOST_AFTER_S": "2", "ARMILLARY_NODE_HEARTBEAT_S": "0.5"},
}
WINDOWS_S = {"default": 6.0, "fastest": 2.0}


class Cluster:
    """A real server and named node daemons in `home`; `close()` stops them all."""

    def __init__(self, home: Path, database_url: str | None, env: dict[str, str]) -> None:
        self.home = home
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = server_env(home, database_url, **env)
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.server = start_server(home, int(self.url.rsplit(":", 1)[1]), self.env)
        try:
            wait(lambda: ready(self.url), 60, "server ready")
            self.started = time.monotonic()  # its node-loss watch began before this
            token = json.loads((home / "context.json").read_text())["token"]
            self.http = httpx.Client(
                base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
        except BaseException:
            self.close()
            raise

    def start_node(self, name: str) -> None:
        token = json.loads((self.home / "context.json").read_text())["token"]
        token_file = self.home / f"{name}.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        node_env = {k: v for k, v in self.env.items() if not k.startswith("ARMILLARY_")}
        with (self.home / f"{name}.log").open("ab") as log:
            self.nodes[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "armillary",
                    "node",
                    "--server",
                    self.url,
                    "--token-file",
                    str(token_file),
                    "--name",
                    name,
                    "--data-dir",
                    str(self.home / name),
                    "--tenant-uids",
                    "off",
                    "--stop-workloads-on-exit",
                ],
                env=node_env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait(lambda: self.node(name).get("status") == "Ready", 60, f"node {name} Ready")

    def node(self, name: str) -> dict[str, Any]:
        items = self.http.get("/api/v1/nodes").json()["items"]
        return next((n for n in items if n["name"] == name), {})

    def schedulable(self, name: str, value: bool) -> None:
        verb = "uncordon" if value else "cordon"
        self.http.post(f"/api/v1/nodes/{name}/{verb}").raise_for_status()

    def apply(self, *documents: dict[str, Any]) -> None:
        self.http.post("/api/v1/apply", json={"documents": list(documents)}).raise_for_status()

    def running_on(self, tenant: str, count: int, node: str) -> bool:
        items = self.http.get("/api/v1/replicas", params={"tenant": tenant}).json()["items"]
        return len(items) == count and all(
            r["node"] == node and (r.get("report") or {}).get("state") == "running" for r in items
        )

    def pids(self, tenant: str) -> list[int]:
        items = self.http.get("/api/v1/replicas", params={"tenant": tenant}).json()["items"]
        return [r["report"]["pid"] for r in items if (r.get("report") or {}).get("pid")]

    def close(self) -> None:
        stop(*self.nodes.values(), self.server, resume=True)  # nodes first: they stop replicas
        with contextlib.suppress(AttributeError):
            self.http.close()


def wait(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s")
        time.sleep(POLL_S)


def documents(tenant: str, replicas: int, tag: str) -> list[dict[str, Any]]:
    api = "armillary.dev/v1"
    component = {
        "name": "web",
        "command": ["sleep", "100000"],
        "replicas": replicas,
        "stop_grace_s": 1,
    }
    return [
        {"apiVersion": api, "kind": "Org", "metadata": {"name": "bench"}, "spec": {}},
        {
            "apiVersion": api,
            "kind": "Stack",
            "metadata": {"name": f"s-{tenant}"},
            "spec": {"components": [component]},
        },
        {
            "apiVersion": api,
            "kind": "Tenant",
            "metadata": {"name": tenant},
            "spec": {"org": "bench", "stack": f"s-{tenant}", "env": {"BENCH_TAG": tag}},
        },
    ]


def remove(cluster: Cluster, tenant: str, tag: str) -> None:
    cluster.http.delete(f"/api/v1/tenants/{tenant}").raise_for_status()
    wait(lambda: not tagged(tag), 60, f"{tenant}'s processes to end")


# ------------------------------------------------------------------------------- node
def node_round(cluster: Cluster, replicas: int, run_tag: str) -> dict[str, float]:
    """One machine death on `a`: the failover time, then the floor on `b`."""
    tenant, tag = f"t-{uuid.uuid4().hex[:6]}", f"{run_tag}-{uuid.uuid4().hex[:6]}"
    cluster.schedulable("b", False)
    cluster.apply(*documents(tenant, replicas, tag))
    wait(lambda: cluster.running_on(tenant, replicas, "a"), 60, "replicas on a")
    cluster.schedulable("b", True)
    stale = cluster.pids(tenant)
    daemon = cluster.nodes["a"].pid
    stopped = {daemon, *_descendants(daemon), *tagged(tag)}
    t0 = time.monotonic()
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait(lambda: cluster.running_on(tenant, replicas, "b"), 120, "replicas on b")
        failover_s = time.monotonic() - t0
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    wait(lambda: cluster.node("a").get("status") == "Ready", 60, "a Ready again")
    wait(lambda: not any(_alive(p) for p in stale), 60, "stale copies stopped")
    remove(cluster, tenant, tag)
    # The floor: the same replicas placed on `b` as new work, `a` cordoned.
    floor_tenant, floor_tag = f"f-{uuid.uuid4().hex[:6]}", f"{run_tag}-{uuid.uuid4().hex[:6]}"
    cluster.schedulable("a", False)
    try:
        t1 = time.monotonic()
        cluster.apply(*documents(floor_tenant, replicas, floor_tag))
        wait(lambda: cluster.running_on(floor_tenant, replicas, "b"), 60, "floor on b")
        floor_s = time.monotonic() - t1
    finally:
        cluster.schedulable("a", True)
    remove(cluster, floor_tenant, floor_tag)
    return {"failover_s": failover_s, "floor_s": floor_s}


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def node_scenario(args: argparse.Namespace, database_url: str | None) -> list[dict[str, Any]]:
    rows = []
    for setting, env in NODE_SETTINGS.items():
        run_tag = f"failover-{uuid.uuid4().hex[:6]}"
        with tempfile.TemporaryDirectory(prefix="armillary-failover-") as home:
            url = database_url
            if url is not None:  # a fresh database per setting: nothing carried over
                name = f"failover_{uuid.uuid4().hex[:8]}"
                asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
                url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
            cluster = Cluster(Path(home), url, env)
            try:
                cluster.start_node("a")
                cluster.start_node("b")
                # A server that starts gives every node a grace to reconnect: no round
                # may fall in it, or it would time the grace.
                grace_s = node_loss.START_GRACE_S + 1 - (time.monotonic() - cluster.started)
                time.sleep(max(0.0, grace_s))
                rounds = []
                for i in range(args.rounds):
                    rounds.append(node_round(cluster, args.replicas, run_tag))
                    print(f"  node/{setting} round {i + 1}: {rounds[-1]}", file=sys.stderr)
            finally:
                cluster.close()
                leftovers = tagged(run_tag)
                for pid in leftovers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if url is not None and database_url is not None:
                    asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}"'))
        rows.append(_row("node", setting, WINDOWS_S[setting], rounds, leftovers=len(leftovers)))
    return rows


def _row(
    scenario: str, setting: str, window_s: float, rounds: list[dict[str, float]], **extra: Any
) -> dict[str, Any]:
    times = [r["failover_s"] for r in rounds]
    floors = [r["floor_s"] for r in rounds]
    median = statistics.median(times)
    floor = statistics.median(floors)
    return {
        "scenario": scenario,
        "setting": setting,
        "rounds": len(rounds),
        "window_s": window_s,
        "median_s": round(median, 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "floor_s": round(floor, 3),
        "beyond_window_s": round(median - window_s - floor, 3),
        "raw": rounds,
        **extra,
    }


def leader_scenario(args: argparse.Namespace, _database_url: str | None) -> list[dict[str, Any]]:
    """Always on Postgres: several servers need it."""
    args.trials = args.rounds
    return leader_failover.scenario_leader(args)


SCENARIOS: dict[str, Callable[[argparse.Namespace, str | None], list[dict[str, Any]]]] = {
    "node": node_scenario,
    "leader": leader_scenario,
}
TABLES: dict[str, Callable[[list[dict[str, Any]]], str]] = {"leader": leader_failover.table}


def table(rows: list[dict[str, Any]]) -> str:
    header = ["scenario", "setting", "rounds", "window", "median", "min", "max", "floor", "beyond"]
    lines = [header]
    for r in rows:
        lines.append(
            [
                r["scenario"],
                r["setting"],
                str(r["rounds"]),
                f"{r['window_s']:g} s",
                f"{r['median_s']:.2f} s",
                f"{r['min_s']:.2f} s",
                f"{r['max_s']:.2f} s",
                f"{r['floor_s']:.2f} s",
                f"{r['beyond_window_s']:+.2f} s",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenario", choices=sorted(SCENARIOS), nargs="+", default=["node", "leader"]
    )
    parser.add_argument("--rounds", "--trials", type=int, default=10)
    parser.add_argument("--poll-s", type=float, default=0.02, help="leader: poll interval")
    parser.add_argument("--replicas", type=int, default=2, help="replicas on the dying node")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    database_url = POSTGRES_URL if args.backend == "postgres" else None
    before = machine()
    rows = []
    for name in args.scenario:
        got = SCENARIOS[name](args, database_url)
        rows.extend(got)
        if name == "node":
            print(f"node: backend {args.backend}, {args.replicas} replica(s) on the dying node")
        print(TABLES.get(name, table)(got), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": before, "backend": args.backend, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
