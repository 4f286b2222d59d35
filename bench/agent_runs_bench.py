"""Benchmark: agent runs worked off by one server's run worker, queued → succeeded.

Run:  .venv/bin/python bench/agent_runs_bench.py [--backend sqlite|postgres|both]
          [--runs 20000] [--tenants 8] [--limit-total 64] [--limit-tenant 16]
          [--hold-ms 0] [--json FILE]

For each backend a real `python -m armillary server` and a real node daemon start in a
temporary ARMILLARY_HOME (Postgres: a fresh database, dropped afterwards). An Org, a
Stack whose one component is the trivial agent of this file (`--agent`: stdlib asyncio,
answers every `POST /run` at once, or after --hold-ms) and --tenants Tenants, each
routing its own repository, are applied, and each tenant's agent replica runs on the
node. First the server runs with ARMILLARY_AGENT_RUN_WORKER=false: --runs signed GitHub
deliveries, round robin over the tenants, queue one run each. Then it is stopped
(SIGTERM) and started again on the same store with the worker on, and the limits
ARMILLARY_AGENT_RUN_CONCURRENCY=--limit-total, ..._TENANT_CONCURRENCY=--limit-tenant.
From the moment it answers /readyz the store is polled directly (sqlite3 / asyncpg)
every 0.1 s until every run succeeded:
  runs/s       runs succeeded per second between 10 % and 90 % of the runs done
               (the steady state), and over the whole drain
  CPU          the server's CPU per run (all threads, /proc), and the machine's
  limits       the most runs `running` at once seen in the store, in total and per
               tenant (sampled), and the most calls in flight at once the agents saw,
               in total and per tenant (exact: each agent logs when each call arrived
               and was answered, on the machine's monotonic clock, and the logs of
               every agent are merged); each must be within its limit
  calls        calls the agents answered; a run called twice would show here
The floor, measured in the same run: the agent's own ceiling, one raw keep-alive
client per connection at --limit-total connections against one agent for 3 s, the same
payload the worker sends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from ingress_bench import RawHttp, cpu_s, machine_busy_s
from procs import (
    POSTGRES_URL,
    free_port,
    machine,
    pg_admin,
    ready,
    server_env,
    start_server,
    stop,
)

API = "armillary.dev/v1"
SOURCE = "github-runs"
SECRET_VALUE = "bench-" + "r4ns" * 8
FLOOR_S = 3.0


# --------------------------------------------------------------------------- the agent
class _Agent(asyncio.Protocol):
    """One connection of the trivial agent: `GET /healthz` → 200, `POST /run` → 200
    with a tiny JSON answer, after `hold_s` (0: in the next loop turn). Each call's
    arrival and answer go to the agent's log."""

    log: list[str]
    hold_s: float

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            lower = head.lower()
            length = 0
            at = lower.find(b"content-length:")
            if at >= 0:
                length = int(lower[at + 15 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith(b"GET"):
                self.transport.write(_answer(b'{"ok":true}'))
                continue
            call = json.loads(body)
            began = time.monotonic_ns()
            loop = asyncio.get_running_loop()
            answer = (self.transport, call["run"], call["tenant"], began)
            if self.hold_s > 0:
                loop.call_later(self.hold_s, self._answer, *answer)
            else:
                loop.call_soon(self._answer, *answer)

    def _answer(self, transport: asyncio.Transport, run: str, tenant: str, began: int) -> None:
        self.log.append(f"{began} {time.monotonic_ns()} {tenant} {run}\n")
        if not transport.is_closing():
            transport.write(_answer(b'{"ok":true}'))


def _answer(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def agent_main() -> None:
    """The agent the node runs: serve $PORT; log calls to $BENCH_DIR/calls-<pid>.log
    (flushed every 0.2 s); hold each answer $BENCH_HOLD_MS."""
    out = Path(os.environ["BENCH_DIR"]) / f"calls-{os.getpid()}.log"
    log: list[str] = []
    _Agent.log = log
    _Agent.hold_s = float(os.environ.get("BENCH_HOLD_MS", "0")) / 1000

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Agent, "127.0.0.1", int(os.environ["PORT"]))
        (out.parent / f"port-{os.environ['BENCH_TENANT']}").write_text(os.environ["PORT"])
        with out.open("a") as f:
            async with server:
                while True:
                    await asyncio.sleep(0.2)
                    if log:
                        f.write("".join(log))
                        f.flush()
                        log.clear()

    asyncio.run(serve())


# --------------------------------------------------------------------------- the world
def tenant_name(i: int) -> str:
    return f"t{i:02d}"


def documents(tenants: int, bench_dir: Path, hold_ms: float) -> list[dict[str, Any]]:
    agent = {
        "name": "agent",
        "command": [sys.executable, str(Path(__file__).resolve()), "--agent"],
        "ports": [{"name": "http"}],
        "health_check": {"http": {"path": "/healthz", "port": "http"}, "interval_s": 1},
    }
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": API,
            "kind": "Secret",
            "metadata": {"name": "hooks"},
            "spec": {"data": {"signing": SECRET_VALUE}},
        },
        {"apiVersion": API, "kind": "Org", "metadata": {"name": "acme"}, "spec": {}},
        {
            "apiVersion": API,
            "kind": "Stack",
            "metadata": {"name": "agent"},
            "spec": {"components": [agent]},
        },
        {
            "apiVersion": API,
            "kind": "WebhookSource",
            "metadata": {"name": SOURCE},
            "spec": {
                "type": "github",
                "secrets": [{"name": "hooks", "key": "signing"}],
                "routing": {"key_space": "github"},
            },
        },
    ]
    for i in range(tenants):
        env = {"BENCH_DIR": str(bench_dir), "BENCH_TENANT": tenant_name(i)}
        env["BENCH_HOLD_MS"] = str(hold_ms)
        docs.append(
            {
                "apiVersion": API,
                "kind": "Tenant",
                "metadata": {"name": tenant_name(i)},
                "spec": {
                    "org": "acme",
                    "stack": "agent",
                    "env": env,
                    "routing": {"github": [f"acme/repo-{i}"]},
                },
            }
        )
    return docs


def delivery(authority: str, n: int, tenants: int) -> bytes:
    body = json.dumps(
        {"repository": {"full_name": f"acme/repo-{n % tenants}"}, "after": uuid.uuid4().hex}
    ).encode()
    digest = hmac.new(SECRET_VALUE.encode(), body, hashlib.sha256).hexdigest()
    head = [
        f"POST /webhooks/{SOURCE} HTTP/1.1",
        f"Host: {authority}",
        "Content-Type: application/json",
        "X-GitHub-Event: push",
        f"X-GitHub-Delivery: {uuid.uuid4()}",
        f"X-Hub-Signature-256: sha256={digest}",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def queue_runs(port: int, runs: int, tenants: int, concurrency: int = 32) -> int:
    """Queue `runs` runs through the webhook endpoint; how many were answered 202."""
    authority = f"127.0.0.1:{port}"
    todo = iter(range(runs))
    accepted = 0

    async def one_connection() -> None:
        nonlocal accepted
        raw = RawHttp("127.0.0.1", port)
        for n in todo:
            if await raw.request(delivery(authority, n, tenants)) == 202:
                accepted += 1
        await raw.close()

    await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    return accepted


class World:
    """A server and a node daemon in `home`; `close()` stops both."""

    def __init__(self, home: Path, database_url: str | None, args: argparse.Namespace) -> None:
        self.home, self.args = home, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.node: subprocess.Popen[bytes] | None = None
        self.server = self.start(worker=False)
        try:
            self.wait(lambda: ready(self.url), 60, "server ready")
            token = json.loads((home / "context.json").read_text())["token"]
            self.http = httpx.Client(
                base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=120
            )
            self.node = self.start_node(token)
            docs = documents(args.tenants, home, args.hold_ms)
            applied = self.http.post("/api/v1/apply", json={"documents": docs})
            if applied.status_code != 200:
                raise RuntimeError(f"apply: {applied.status_code} {applied.text}")
            self.wait(self.agents_up, 120, "every agent replica running and healthy")
        except BaseException:
            self.close()
            raise

    def start(self, *, worker: bool) -> subprocess.Popen[bytes]:
        env = server_env(
            self.home,
            self.database_url,
            ARMILLARY_AGENT_RUN_WORKER="true" if worker else "false",
            ARMILLARY_AGENT_RUN_CONCURRENCY=str(self.args.limit_total),
            ARMILLARY_AGENT_RUN_TENANT_CONCURRENCY=str(self.args.limit_tenant),
            ARMILLARY_AGENT_RUN_MAX_ATTEMPTS="3",
            ARMILLARY_METRICS="true",
        )
        return start_server(self.home, self.port, env)

    def start_node(self, token: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
        argv = [sys.executable, "-m", "armillary", "node", "--server", self.url]
        argv += ["--token", token, "--name", "bench", "--data-dir", str(self.home / "node")]
        argv += ["--tenant-uids", "off", "--stop-workloads-on-exit"]
        with (self.home / "node.log").open("ab") as log:
            return subprocess.Popen(argv, env=env, cwd=self.home, stdout=log, stderr=log)

    def agents_up(self) -> bool:
        items = self.http.get("/api/v1/replicas").json()["items"]
        up = [r for r in items if (r.get("report") or {}).get("healthy") is True]
        ports = list(self.home.glob("port-*"))
        return len(up) >= self.args.tenants and len(ports) >= self.args.tenants

    def restart_with_worker(self) -> None:
        self.server.send_signal(signal.SIGTERM)
        self.server.wait(timeout=60)
        self.server = self.start(worker=True)

    def wait(self, predicate: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            for p in (self.server, self.node):
                if p is not None and p.poll() is not None:
                    raise RuntimeError(f"{what}: a process exited\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout_s} s\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        out = []
        for name in ("server.log", "node.log"):
            path = self.home / name
            if path.exists():
                out.append(f"--- {name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def close(self) -> None:
        stop(self.node, self.server, timeout_s=30)


# --------------------------------------------------------------------------- the store
STATES = "SELECT state, count(*) FROM agent_runs GROUP BY state"
RUNNING = "SELECT tenant, count(*) FROM agent_runs WHERE state = 'running' GROUP BY tenant"


class Store:
    """Direct reads of the run queue, outside the server."""

    def __init__(self, home: Path, database_url: str | None) -> None:
        self.sqlite = None if database_url else sqlite3.connect(home / "armillary.db")
        self.url = database_url
        self.pg: Any = None

    async def open(self) -> None:
        if self.url:
            import asyncpg

            self.pg = await asyncpg.connect(self.url, timeout=10)

    async def rows(self, sql: str) -> dict[str, int]:
        if self.pg is not None:
            return {r[0]: int(r[1]) for r in await self.pg.fetch(sql)}
        assert self.sqlite is not None
        return {r[0]: int(r[1]) for r in self.sqlite.execute(sql).fetchall()}

    async def close(self) -> None:
        if self.pg is not None:
            await self.pg.close()
        if self.sqlite is not None:
            self.sqlite.close()


async def drain(world: World, store: Store, runs: int) -> dict[str, Any]:
    """Poll the store until every run succeeded (or nothing moved for 60 s)."""
    samples: list[tuple[float, int]] = []
    most_running, most_tenant = 0, 0
    pid = world.server.pid
    cpu0, (busy0, _), t0 = cpu_s(pid), machine_busy_s(), time.monotonic()
    moved_at = t0
    states: dict[str, int] = {}
    while True:
        states = await store.rows(STATES)
        running = await store.rows(RUNNING)
        most_running = max(most_running, sum(running.values()))
        most_tenant = max([most_tenant, *running.values()])
        now = time.monotonic()
        done = states.get("succeeded", 0)
        if not samples or done != samples[-1][1]:
            moved_at = now
        samples.append((now, done))
        if done + states.get("dead", 0) >= runs or now - moved_at > 60:
            break
        await asyncio.sleep(0.1)
    server_cpu = cpu_s(pid) - cpu0
    machine_cpu = machine_busy_s()[0] - busy0
    return {
        "samples": samples,
        "states": states,
        "most_running_total": most_running,
        "most_running_tenant": most_tenant,
        "server_cpu_s": server_cpu,
        "machine_cpu_s": machine_cpu,
        "t0": t0,
    }


def steady_rate(samples: list[tuple[float, int]], runs: int) -> float:
    """Runs per second between the samples at 10 % and 90 % of `runs` done."""

    def first(at: int) -> tuple[float, int]:
        return next(s for s in samples if s[1] >= at)

    (ta, na), (tb, nb) = first(runs // 10), first(runs * 9 // 10)
    return (nb - na) / (tb - ta) if tb > ta else float("nan")


def agent_calls(home: Path) -> dict[str, Any]:
    """The agents' logs merged: calls, distinct runs, the most in flight at once."""
    edges: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    calls = 0
    for path in home.glob("calls-*.log"):
        for line in path.read_text().splitlines():
            began, ended, tenant, run = line.split()
            if tenant == "floor":  # the floor's calls, flushed after the runs began
                continue
            calls += 1
            seen.add(run)
            # At equal times a start sorts before an end: ties count as overlapping.
            edges += [(int(began), 0, tenant), (int(ended), 1, tenant)]
    edges.sort()
    now: dict[str, int] = {}
    total = most_total = most_tenant = 0
    for _, kind, tenant in edges:
        step = 1 if kind == 0 else -1
        now[tenant] = now.get(tenant, 0) + step
        total += step
        most_total, most_tenant = max(most_total, total), max(most_tenant, now[tenant])
    return {"calls": calls, "runs": len(seen), "most_total": most_total, "most_tenant": most_tenant}


async def floor(home: Path, concurrency: int) -> dict[str, Any]:
    """The agent's own ceiling: raw keep-alive POSTs of a worker-sized payload."""
    port = int(next(iter(sorted(home.glob("port-*")))).read_text())
    payload = json.dumps(
        {"run": "floor", "tenant": "floor", "input": {}, "token": "x" * 300, "event": None}
    ).encode()
    request = (
        f"POST /run HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    deadline = time.monotonic() + FLOOR_S
    done = 0

    async def one() -> None:
        nonlocal done
        raw = RawHttp("127.0.0.1", port)
        while time.monotonic() < deadline:
            await raw.request(request)
            done += 1
        await raw.close()

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    return {"calls_per_s": done / (time.monotonic() - t0)}


# --------------------------------------------------------------------------- one backend
def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    database_url = dbname = None
    if backend == "postgres":
        dbname = f"armillary_runs_{secrets.token_hex(4)}"
        asyncio.run(pg_admin(f'CREATE DATABASE "{dbname}"'))
        database_url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{dbname}"
    try:
        with tempfile.TemporaryDirectory(prefix="armillary-runs-") as tmp:
            home = Path(tmp)
            world = World(home, database_url, args)
            try:
                return measure(world, home, database_url, args) | {"backend": backend}
            finally:
                world.close()
    finally:
        if dbname:
            asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))


def measure(
    world: World, home: Path, database_url: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    floor_figures = asyncio.run(floor(home, args.limit_total))
    for path in home.glob("calls-*.log"):
        path.write_text("")  # the floor's calls are not runs
    t0 = time.monotonic()
    accepted = asyncio.run(queue_runs(world.port, args.runs, args.tenants))
    queue_s = time.monotonic() - t0
    print(f"queued {accepted} runs in {queue_s:.1f} s", file=sys.stderr)
    world.restart_with_worker()
    world.wait(lambda: ready(world.url), 60, "server ready with the worker")

    async def watch() -> dict[str, Any]:
        store = Store(home, database_url)
        await store.open()
        try:
            return await drain(world, store, accepted)
        finally:
            await store.close()

    drained = asyncio.run(watch())
    time.sleep(0.5)  # the agents flush their logs every 0.2 s
    samples = drained.pop("samples")
    t_end = samples[-1][0]
    started = next((t for t, n in samples if n > 0), t_end)
    succeeded = drained["states"].get("succeeded", 0)
    return {
        "runs": accepted,
        "queue_s": queue_s,
        "runs_per_s": steady_rate(samples, accepted) if succeeded == accepted else 0.0,
        "runs_per_s_whole": succeeded / max(1e-9, t_end - started),
        "drain_s": t_end - started,
        "server_cpu_ms_per_run": 1000 * drained["server_cpu_s"] / max(1, succeeded),
        "machine_cpu_ms_per_run": 1000 * drained["machine_cpu_s"] / max(1, succeeded),
        "states": drained["states"],
        "store": {
            "most_running_total": drained["most_running_total"],
            "most_running_tenant": drained["most_running_tenant"],
        },
        "agents": agent_calls(home),
        "floor": floor_figures,
    }


def held(r: dict[str, Any], args: argparse.Namespace) -> bool:
    return (
        r["agents"]["most_total"] <= args.limit_total
        and r["agents"]["most_tenant"] <= args.limit_tenant
        and r["store"]["most_running_total"] <= args.limit_total
        and r["store"]["most_running_tenant"] <= args.limit_tenant
        and r["agents"]["calls"] == r["agents"]["runs"] == r["runs"]
    )


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    out = [
        f"{args.runs} runs over {args.tenants} tenants; limits {args.limit_total} in total, "
        f"{args.limit_tenant} per tenant; the agent holds each answer {args.hold_ms:g} ms",
        "",
        "| backend | runs/s (10–90 %) | runs/s (whole drain) | server CPU ms/run "
        "| machine CPU ms/run | most in flight: agents total / tenant "
        "| most `running`: store total / tenant | calls / runs | limits held "
        "| floor: agent alone calls/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend in ("sqlite", "postgres"):
        if backend not in results:
            continue
        r = results[backend]
        cells = [
            backend,
            f"{r['runs_per_s']:,.0f}",
            f"{r['runs_per_s_whole']:,.0f}",
            f"{r['server_cpu_ms_per_run']:.2f}",
            f"{r['machine_cpu_ms_per_run']:.2f}",
            f"{r['agents']['most_total']} / {r['agents']['most_tenant']}",
            f"{r['store']['most_running_total']} / {r['store']['most_running_tenant']}",
            f"{r['agents']['calls']} / {r['runs']}",
            "yes" if held(r, args) else "NO",
            f"{r['floor']['calls_per_s']:,.0f}",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=20_000, help="runs queued, then worked off")
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--limit-total", type=int, default=64, help="runs in flight at once")
    parser.add_argument("--limit-tenant", type=int, default=16, help="per tenant")
    parser.add_argument("--hold-ms", type=float, default=0, help="the agent's time per call")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--agent", action="store_true", help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.agent:
        agent_main()
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {"machine": machine(), "options": vars(args) | {"json": None}}
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        results[backend] = run_backend(backend, args)
        print(f"{backend}: {results[backend]['runs_per_s']:,.0f} runs/s", file=sys.stderr)
    print(table(results, args), flush=True)
    if args.json:
        with contextlib.suppress(TypeError):
            args.json.write_text(json.dumps(results, indent=2, default=str))
    if not all(held(results[b], args) for b in ("sqlite", "postgres") if b in results):
        sys.exit("a limit did not hold, or a run was called other than once")


if __name__ == "__main__":
    main()
