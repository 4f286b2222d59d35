"""Benchmark: a fleet of tenants applied at once, end to end, against the Popen floor.

Run:  .venv/bin/python bench/fleet_e2e.py [--tenants 30 300 1000]
          [--backend sqlite postgres] [--poll-s 0.25] [--timeout-s 180] [--json FILE]
          [--restart [term|kill]]

For each backend and each --tenants N, a fresh real `python -m armillary server` (one
uvicorn worker; Postgres: a fresh database at 127.0.0.1:5432, dropped afterwards) and a
real `python -m armillary node` on loopback start in a temporary ARMILLARY_HOME. The node
runs with `--tenant-uids off` (every replica as the daemon's user), so the floor below
spawns exactly what the node spawns, the same way. One apply holds an Org, a Stack of
3 services (`sh -c 'sleep 100000'` each) and N Tenants of that stack: 3×N replicas.
Timed, from the moment the apply request returns:
  apply        the apply request itself (POST /api/v1/apply, all documents, one call)
  exec'd       all 3×N processes are children of the node daemon (/proc, every 20 ms)
  running      GET /api/v1/replicas reports every replica `running` (every --poll-s,
               from when all are exec'd: the API cannot say so earlier, and each poll
               reads every allocation on the server being measured)
  Ready        GET /api/v1/tenants shows every tenant's Ready condition True
               (every --poll-s, after all are running)
  per tenant   (apply + Ready) / N, in ms
The floor, in the same run, before the server starts: one Python process Popens the
same 3×N `sh -c 'sleep 100000'` processes (same env shape, stdin from /dev/null, output
to a file), timed until the last Popen returns.
With --restart, once every tenant is Ready the server is stopped (SIGTERM and waited
for, or with `kill` SIGKILL) and started again on the same store and port; the node
daemon reconnects by itself. Timed, from the stop signal and then from the new server's
first answer on /healthz:
  stop         the signal until the old server has exited
  → healthz    the signal until the new server answers /healthz (the whole outage)
  → node back  /healthz until GET /api/v1/nodes shows the node connected again (the
               server marks every node disconnected at start; only a new hello counts)
  → Ready again  /healthz until, the node being back, every replica is `running` and
               every tenant Ready as GET /api/v1/tenants shows them
  Ready at up  tenants whose stored status said Ready at the first answer (the status
               of before the restart: why "Ready again" waits for the node)
  restarted    replicas whose pid, restart count or start time in GET /api/v1/replicas
               differ after from before (or that appeared or went)
  children ±   the node daemon's live children that are not the same before and after
Every process is stopped at the end, on errors and on Ctrl-C/SIGTERM too: the node
stops its workloads on exit, and any process left carrying this run's BENCH_TAG in its
environment is killed and counted as a leftover.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from procs import (
    POSTGRES_URL,
    children,
    free_port,
    machine,
    pg_admin,
    ready,
    ready_tenants,
    running_replicas,
    server_env,
    start_server,
    state_of,
    stop,
    tagged,
)

API = "armillary.dev/v1"
COMPONENTS = ("web", "worker", "cron")
COMMAND = "sleep 100000"
STACK = "fleet"
ORG = "fleet"


# --------------------------------------------------------------------------- helpers


def live_children(pid: int) -> int:
    return sum(1 for c in children(pid) if state_of(c) not in ("Z", "X", None))


def kill_tagged(tag: str) -> int:
    left = tagged(tag)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(left)


def documents(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": API, "kind": "Org", "metadata": {"name": ORG}, "spec": {}},
        {
            "apiVersion": API,
            "kind": "Stack",
            "metadata": {"name": STACK},
            "spec": {
                "components": [
                    {"name": name, "command": COMMAND, "replicas": 1} for name in COMPONENTS
                ]
            },
        },
        *(
            {
                "apiVersion": API,
                "kind": "Tenant",
                "metadata": {"name": f"t{i:05d}"},
                "spec": {"org": ORG, "stack": STACK, "env": {"BENCH_TAG": tag}},
            }
            for i in range(n)
        ),
    ]


# --------------------------------------------------------------------------- floor
def floor(n: int, tag: str, home: Path) -> dict[str, Any]:
    """3×N `sh -c 'sleep …'` Popened from one Python process, as the node spawns them."""
    env = {**os.environ, "BENCH_TAG": tag}
    with (home / "floor.log").open("ab") as log:
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                ["sh", "-c", COMMAND],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for _ in range(3 * n)
        ]
        spent = time.perf_counter() - t0
    for p in procs:
        os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait()
    return {"popen_s": spent, "per_tenant_ms": 1000 * spent / n}


# --------------------------------------------------------------------------- armillary
class Fleet:
    """A real server and a real node daemon in `home`; `close()` stops both."""

    def __init__(self, home: Path, database_url: str | None) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = server_env(home, database_url)
        self.env = env
        self.node: subprocess.Popen[bytes] | None = None
        self.server = self.spawn_server()
        try:
            self._wait(self._ready, 60, "server ready")
            token = json.loads((home / "context.json").read_text())["token"]
            self.http = self.client()
            node_env = {k: v for k, v in env.items() if not k.startswith("ARMILLARY_")}
            with (home / "node.log").open("ab") as log:
                self.node = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "armillary",
                        "node",
                        "--server",
                        self.url,
                        "--token",
                        token,
                        "--name",
                        "bench",
                        "--data-dir",
                        str(home / "node"),
                        "--tenant-uids",
                        "off",
                        "--stop-workloads-on-exit",
                    ],
                    env=node_env,
                    cwd=home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self._wait(
                lambda: any(n["connected"] for n in self.http.get("/api/v1/nodes").json()["items"]),
                60,
                "node connected",
            )
        except BaseException:
            self.close()
            raise

    def spawn_server(self) -> subprocess.Popen[bytes]:
        """Start `armillary server` on this fleet's home, store and port (again, after
        a restart: the same context file, so the same admin token)."""
        return start_server(self.home, self.port, self.env)

    def client(self) -> httpx.Client:
        token = json.loads((self.home / "context.json").read_text())["token"]
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=300
        )

    def _wait(self, predicate: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            for p in (self.server, self.node):
                if p is not None and p.poll() is not None:
                    raise RuntimeError(f"{what}: a process exited\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout_s} s")
            time.sleep(0.05)

    def _ready(self) -> bool:
        return ready(self.url)

    def log(self) -> str:
        out = []
        for name in ("server.log", "node.log"):
            path = self.home / name
            if path.exists():
                out.append(f"--- {name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def node_connected(self) -> bool:
        items = self.http.get("/api/v1/nodes").json()["items"]
        return any(n["name"] == "bench" and n["connected"] for n in items)

    def replica_processes(self) -> dict[str, tuple[Any, ...]]:
        """Each replica's process as the API reports it: (pid, restarts, started at)."""
        items = self.http.get("/api/v1/replicas").json()["items"]
        out: dict[str, tuple[Any, ...]] = {}
        for r in items:
            report = r.get("report") or {}
            out[r["id"]] = (report.get("pid"), report.get("restarts"), report.get("startedAt"))
        return out

    def running(self) -> int:
        return running_replicas(self.http)

    def ready(self) -> int:
        return ready_tenants(self.http)

    def close(self) -> None:
        stop(self.node, self.server)  # the node first: it stops its replicas
        with contextlib.suppress(AttributeError):
            self.http.close()


def measure(fleet: Fleet, n: int, tag: str, args: argparse.Namespace) -> dict[str, Any]:
    replicas = 3 * n
    assert fleet.node is not None
    node_pid = fleet.node.pid
    out: dict[str, Any] = {"tenants": n, "replicas": replicas}
    a0 = time.perf_counter()
    response = fleet.http.post("/api/v1/apply", json={"documents": documents(n, tag)})
    t0 = time.perf_counter()
    if response.status_code != 200:
        raise RuntimeError(f"apply: {response.status_code} {response.text[:2000]}")
    out["apply_s"] = t0 - a0
    deadline = t0 + args.timeout_s
    execd = running = ready = None
    next_api = t0
    seen_running = seen_ready = 0
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        if execd is None and live_children(node_pid) >= replicas:
            execd = now - t0
        # The API cannot say all running before all are exec'd: polling it only from
        # then on keeps the harness's reads (3×N allocations each) off the server
        # while it is placing and pushing.
        if execd is not None and now >= next_api:
            if running is None:
                seen_running = fleet.running()
                if seen_running >= replicas:
                    running = time.perf_counter() - t0
            if running is not None and ready is None:
                seen_ready = fleet.ready()
                if seen_ready >= n:
                    ready = time.perf_counter() - t0
            next_api = time.perf_counter() + args.poll_s
        if execd is not None and ready is not None:
            break
        time.sleep(0.02)
    if ready is None:  # timed out: how far it got
        seen_running, seen_ready = fleet.running(), fleet.ready()
    out.update(
        {
            "execd_s": execd,
            "running_s": running,
            "ready_s": ready,
            "timed_out": ready is None,
            "seen_running": seen_running,
            "seen_ready": seen_ready,
            "seen_execd": live_children(node_pid),
            "per_tenant_ms": 1000 * (out["apply_s"] + ready) / n if ready is not None else None,
        }
    )
    return out


def measure_restart(fleet: Fleet, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Stop the server of a Ready fleet, start it again, time its return to Ready and
    count the replicas that were restarted meanwhile (there should be none)."""
    replicas = 3 * n
    assert fleet.node is not None
    node_pid = fleet.node.pid
    before = fleet.replica_processes()
    children_before = {c for c in children(node_pid) if state_of(c) not in ("Z", "X", None)}
    fleet.http.close()
    kill = args.restart == "kill"
    s0 = time.perf_counter()
    fleet.server.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    fleet.server.wait(timeout=120)
    stop_s = time.perf_counter() - s0
    fleet.server = fleet.spawn_server()
    fleet._wait(fleet.healthy, 120, "server answering /healthz again")
    up = time.perf_counter()
    fleet.http = fleet.client()
    ready_at_up = fleet.ready()
    deadline = up + args.timeout_s
    node_back = ready_again = None
    seen_running = seen_ready = 0
    while time.perf_counter() < deadline:
        if node_back is None and fleet.node_connected():
            node_back = time.perf_counter() - up
        if node_back is not None:
            seen_running = fleet.running()
            if seen_running >= replicas:
                seen_ready = fleet.ready()
                if seen_ready >= n:
                    ready_again = time.perf_counter() - up
                    break
            time.sleep(args.poll_s)
        else:
            time.sleep(0.02)  # the nodes list is small: watch it closely
    after = fleet.replica_processes()
    children_after = {c for c in children(node_pid) if state_of(c) not in ("Z", "X", None)}
    restarted = sum(1 for key, seen in before.items() if after.get(key) != seen)
    restarted += len(after.keys() - before.keys())
    return {
        "restart": {
            "signal": "SIGKILL" if kill else "SIGTERM",
            "stop_s": stop_s,
            "healthz_s": up - s0,
            "node_back_s": node_back,
            "ready_again_s": ready_again,
            "timed_out": ready_again is None,
            "ready_at_up": ready_at_up,
            "seen_running": seen_running,
            "seen_ready": seen_ready,
            "replicas_restarted": restarted,
            "children_changed": len(children_before ^ children_after),
            "server_pid": fleet.server.pid,
        }
    }


def run(backend: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    tag = f"fleet-{backend}-{n}-{secrets.token_hex(4)}"
    database_url = dbname = None
    result: dict[str, Any] = {"backend": backend}
    try:
        with tempfile.TemporaryDirectory(prefix="armillary-fleet-") as tmp:
            home = Path(tmp)
            result["floor"] = floor(n, tag + "-floor", home)
            if backend == "postgres":
                dbname = f"armillary_fleet_{secrets.token_hex(4)}"
                asyncio.run(pg_admin(f'CREATE DATABASE "{dbname}"'))
                database_url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{dbname}"
            fleet = Fleet(home, database_url)
            try:
                result["server_pid"] = fleet.server.pid
                result.update(measure(fleet, n, tag, args))
                if args.restart and not result["timed_out"]:
                    result.update(measure_restart(fleet, n, args))
                if args.hold_s:
                    assert fleet.node is not None
                    print(
                        f"holding {args.hold_s:.0f} s: server pid {fleet.server.pid}, "
                        f"node pid {fleet.node.pid}",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(args.hold_s)
            finally:
                fleet.close()
                result["leftovers"] = kill_tagged(tag) + kill_tagged(tag + "-floor")
    finally:
        if dbname:
            asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
    return result


# --------------------------------------------------------------------------- table
def seconds(value: float | None, timeout_s: float, seen: int = 0, of: int = 0) -> str:
    """`value` in seconds, or the timeout marker with how many had got there."""
    return f"{value:.2f}" if value is not None else f"> {timeout_s:.0f} TIMEOUT ({seen}/{of})"


def table(rows: list[dict[str, Any]], timeout_s: float) -> str:
    head = [
        "backend",
        "tenants (replicas)",
        "apply s",
        "→ all exec'd s",
        "→ all running s",
        "→ all Ready s",
        "ms / tenant",
        "floor: Popen s",
        "floor ms / tenant",
        "leftovers",
    ]
    restarts = any("restart" in r for r in rows)
    if restarts:
        head += RESTART_HEAD
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        per = r.get("per_tenant_ms")
        cells = [
            r["backend"],
            f"{r['tenants']} ({r['replicas']})",
            f"{r['apply_s']:.2f}",
            seconds(r["execd_s"], timeout_s, r["seen_execd"], r["replicas"]),
            seconds(r["running_s"], timeout_s, r["seen_running"], r["replicas"]),
            seconds(r["ready_s"], timeout_s, r["seen_ready"], r["tenants"]),
            f"{per:.1f}" if per is not None else "–",
            f"{r['floor']['popen_s']:.2f}",
            f"{r['floor']['per_tenant_ms']:.2f}",
            str(r["leftovers"]),
        ]
        if restarts:
            cells += restart_cells(r, timeout_s)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


RESTART_HEAD = [
    "restart",
    "stop s",
    "→ healthz s",
    "→ node back s",
    "→ Ready again s",
    "Ready at up",
    "restarted",
    "children ±",
]


def restart_cells(r: dict[str, Any], timeout_s: float) -> list[str]:
    """The --restart columns of one row (dashes for a run that did not restart)."""
    x = r.get("restart")
    if x is None:
        return ["–"] * len(RESTART_HEAD)
    return [
        x["signal"],
        f"{x['stop_s']:.2f}",
        f"{x['healthz_s']:.2f}",
        seconds(x["node_back_s"], timeout_s),
        seconds(x["ready_again_s"], timeout_s, x["seen_ready"], r["tenants"]),
        f"{x['ready_at_up']}/{r['tenants']}",
        str(x["replicas_restarted"]),
        str(x["children_changed"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[30, 300, 1000])
    parser.add_argument(
        "--backend", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    parser.add_argument("--poll-s", type=float, default=0.25, help="API poll interval")
    parser.add_argument(
        "--timeout-s", type=float, default=180.0, help="give up waiting for Ready after this"
    )
    parser.add_argument(
        "--hold-s",
        type=float,
        default=0.0,
        help="keep each fleet up this long after it is measured (to profile it)",
    )
    parser.add_argument(
        "--restart",
        nargs="?",
        const="term",
        choices=["term", "kill"],
        help="once all are Ready, stop the server (SIGTERM, or SIGKILL with `kill`), start "
        "it again on the same store and port, and time the fleet back to Ready",
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    # SIGTERM (and SIGINT) unwind through the `finally` blocks: the node stops its
    # replicas, the server stops, tagged leftovers are killed, the database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {
        "machine": machine(),
        "options": {k: str(v) for k, v in vars(args).items() if k != "json"},
        "runs": [],
    }
    rows: list[dict[str, Any]] = results["runs"]
    try:
        for backend in args.backend:
            for n in args.tenants:
                rows.append(run(backend, n, args))
                last = rows[-1]
                again = ""
                if "restart" in last:
                    back = last["restart"]["ready_again_s"]
                    again = f", Ready again {seconds(back, args.timeout_s)} after the restart"
                print(
                    f"{backend} {n}: Ready "
                    + seconds(last["ready_s"], args.timeout_s, last["seen_ready"], n)
                    + again,
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if rows:
            print(table(rows, args.timeout_s), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
