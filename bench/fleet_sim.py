"""Benchmark: one real server and N simulated nodes over real WebSocket sessions.

Run:  .venv/bin/python bench/fleet_sim.py [--nodes 2000] [--tenants 5000] [--replicas 4]
          [--procs 4] [--heartbeat-s 5] [--steady-s 30] [--backend sqlite|postgres]
          [--ladder 500 1000 2000 4000] [--timeout-s 300] [--json FILE]

A fresh real `python -m armillary server` (one uvicorn worker; Postgres: a fresh
database at 127.0.0.1:5432, dropped afterwards) starts in a temporary ARMILLARY_HOME.
--procs client processes, each one asyncio loop, hold --nodes WebSocket sessions
between them (`websockets`, as the daemon uses). Each simulated node speaks the node
protocol as `armillary node` does — a real `hello` (its own name, labels, a capacity
of 64 cores / 256 GiB, an `instance` id, `protocol.PROTOCOL_VERSION` from the
package), `welcome`, then assignments — but starts no process: it reports every
replica it newly holds as `running` (healthy where the spec has a health check; each
port of 0 gets a fake number), and heartbeats every --heartbeat-s with made-up
usage. It understands the full `assignments` message (its whole set: diffed against
what it holds) and `assignments.delta` (`add` specs, `remove` ids: applied), and its
reports name only the replicas that changed. Frames are decoded as plain JSON, not
`protocol.decode`, so fields the server adds later do not break it.

The stack: 2 services — `web` (R - R//2 replicas, a port of 0 and an HTTP health
check) and `worker` (R//2 replicas) — with `sh -c 'sleep 100000'` commands that are
never run. One Org, the Stack and T Tenants are applied with POST /api/v1/apply in
chunks of at most 1,000 documents (the server takes ARMILLARY_MAX_APPLY_DOCUMENTS,
2,000 by default, per call).

Measured, per run:
  connect      from starting the clients until every node has its `welcome` (if
               the server has not taken them all within --timeout-s, no tenants
               are applied and the steady state is measured with those it took)
  apply        the apply requests, first to last
  → running    from the first apply request until every replica is reported running
               (counted in the clients: each tells the parent how many of its
               replicas it has reported running); then confirmed through the API
               (GET /api/v1/replicas: every replica's report `running`)
  → Ready      until GET /api/v1/tenants shows every tenant's Ready condition True
               (the list has no paging: `limit` is ignored today)
  steady       over --steady-s once all are Ready (the controllers done too): the
               server's CPU (% of one core, from its CPU time) and RSS (largest
               sample, every 0.5 s); heartbeat → stored lag: 50 sampled nodes
               record when they send each heartbeat, the harness reads
               `heartbeatAt` (stored by the server when it handles the heartbeat)
               through GET /api/v1/nodes every 2 s, and each stored value is
               matched to the last heartbeat its node sent before it (same clock);
               GET /api/v1/tenants?limit=100 latency, one request every 0.5 s. The
               harness's own requests count in the server's CPU.
  floor        in the same run, before the server starts: the same clients hold
               the same number of sessions against a bare `websockets` server that
               answers hello with welcome and an empty assignment set and
               json-decodes every frame; its CPU and RSS over --floor-s of
               heartbeats: the cost of the transport alone.
--ladder runs the whole thing for each node count (a fresh floor and server per
step, tenants scaled as T × nodes / N), stops at the first step that misses a
bound, and reports the largest that met them all. --tenants 0 measures the
sessions and heartbeats alone.
Every process is stopped on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import multiprocessing
import multiprocessing.synchronize
import queue
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets
from procs import (
    POSTGRES_URL,
    free_port,
    machine,
    pg_admin,
    ready,
    ready_tenants,
    running_replicas,
    server_env,
    start_server,
)

from armillary.protocol import PROTOCOL_VERSION

API = "armillary.dev/v1"
ORG = "fleet"
STACK = "fleet"
COMMAND = "sleep 100000"
CHUNK_DOCUMENTS = 1000
LAG_SAMPLE = 50
CAPACITY = {"cpu_millicores": 64_000, "memory_mb": 256 * 1024}
TARGET = {
    "running_s": 30.0,
    "cpu_percent": 30.0,
    "rss_mb": 600.0,
    "lag_p99_s": 1.0,
    "tenants_p99_ms": 200.0,
}


# --------------------------------------------------------------------------- simulated nodes
class SimNode:
    """One simulated node: what it holds, and which of those it has said are running."""

    def __init__(self, name: str, worker: int) -> None:
        self.name = name
        self.instance = f"sim-{secrets.token_hex(8)}"
        self.held: dict[str, dict[str, Any]] = {}  # id → the spec as sent
        self.reported: dict[str, dict[str, Any]] = {}  # id → its `running` report
        self.worker = worker


class Worker:
    """One client process: an asyncio loop holding its share of the simulated nodes."""

    def __init__(
        self,
        index: int,
        names: list[str],
        url: str,
        token: str,
        heartbeat_s: float,
        sampled: set[str],
        events: multiprocessing.Queue[Any],
        stop: multiprocessing.synchronize.Event,
    ) -> None:
        self.index = index
        self.nodes = [SimNode(n, index) for n in names]
        self.url = url
        self.token = token
        self.heartbeat_s = heartbeat_s
        self.sampled = sampled
        self.events = events
        self.stop = stop
        self.welcomed: set[str] = set()
        self.running = 0
        self.reconnects = 0
        self.errors: list[str] = []
        self._ports = itertools.count(20_000 + index)
        self._pids = itertools.count(100_000 + 10_000_000 * index)

    def _fake_port(self) -> int:
        # Unique within the process; distinct between processes (stride of 8).
        return 20_000 + (next(self._ports) * 8 + self.index) % 40_000

    async def run(self) -> None:
        gate = asyncio.Semaphore(25)  # hellos in flight per process
        tasks = [asyncio.create_task(self._node(node, gate)) for node in self.nodes]
        progress = asyncio.create_task(self._progress())
        await asyncio.to_thread(self.stop.wait)  # the parent's word to stop
        for task in (*tasks, progress):
            task.cancel()
        await asyncio.gather(*tasks, progress, return_exceptions=True)
        self._send_progress()

    def _send_progress(self) -> None:
        self.events.put(
            (
                "progress",
                self.index,
                {
                    "welcomed": len(self.welcomed),
                    "running": self.running,
                    "reconnects": self.reconnects,
                    "errors": self.errors[-3:],
                },
            )
        )

    async def _progress(self) -> None:
        last: tuple[int, int, int, int] | None = None
        while True:
            now = (len(self.welcomed), self.running, self.reconnects, len(self.errors))
            if now != last:
                self._send_progress()
                last = now
            await asyncio.sleep(0.1)

    async def _node(self, node: SimNode, gate: asyncio.Semaphore) -> None:
        delay_s = 0.1
        while True:
            try:
                async with gate:
                    ws = await websockets.connect(
                        self.url, max_size=16 * 1024 * 1024, open_timeout=60
                    )
                    try:
                        await self._hello(ws, node)
                    except BaseException:
                        await ws.close()
                        raise
                async with ws:
                    self.welcomed.add(node.name)
                    delay_s = 0.1
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._receive(ws, node))
                        group.create_task(self._heartbeat(ws, node))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # counted; reconnect as a daemon would
                self.welcomed.discard(node.name)
                self.reconnects += 1
                while isinstance(exc, ExceptionGroup):  # the session's tasks: the first cause
                    exc = exc.exceptions[0]
                self.errors.append(f"{node.name}: {type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(delay_s * (0.5 + random.random()))  # jitter
            delay_s = min(5.0, delay_s * 2)

    async def _hello(self, ws: Any, node: SimNode) -> None:
        hello = {
            "node": node.name,
            "token": self.token,
            "address": "127.0.0.1",
            "capacity": CAPACITY,
            "protocol": PROTOCOL_VERSION,
            "labels": {"sim": "true", "zone": f"z{int(node.name[-1]) % 3}"},
            "running": list(node.reported.values()),  # after a reconnect: what it holds
            "isolation": "shared-user",
            "instance": node.instance,
        }
        await ws.send(json.dumps({"type": "hello", "seq": 1, "payload": hello}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if first.get("type") != "welcome":
            raise RuntimeError(f"expected welcome, got {first.get('type')!r}")

    async def _receive(self, ws: Any, node: SimNode) -> None:
        seq = itertools.count(2)
        async for raw in ws:
            message = json.loads(raw)
            kind, payload = message.get("type"), message.get("payload") or {}
            if kind == "assignments":
                specs = {s["id"]: s for s in payload.get("allocations", [])}
                removed = [i for i in node.held if i not in specs]
                added = [s for i, s in specs.items() if i not in node.held]
            elif kind == "assignments.delta":
                removed = [i for i in payload.get("remove", []) if i in node.held]
                added = [s for s in payload.get("add", []) if s["id"] not in node.held]
            else:
                continue  # logs/exec streams are not simulated
            for allocation in removed:
                node.held.pop(allocation, None)
                if node.reported.pop(allocation, None) is not None:
                    self.running -= 1
            reports = []
            for spec in added:
                node.held[spec["id"]] = spec
                report = self._running(spec)
                node.reported[spec["id"]] = report
                reports.append(report)
            self.running += len(reports)
            if reports:
                envelope = {"type": "report", "seq": next(seq), "payload": {"replicas": reports}}
                await ws.send(json.dumps(envelope))

    def _running(self, spec: dict[str, Any]) -> dict[str, Any]:
        ports = {name: port or self._fake_port() for name, port in spec.get("ports", {}).items()}
        return {
            "id": spec["id"],
            "state": "running",
            "pid": next(self._pids),
            "restarts": 0,
            "healthy": True if spec.get("health_check") else None,
            "started_at": time.time(),
            "ports": ports,
        }

    async def _heartbeat(self, ws: Any, node: SimNode) -> None:
        await asyncio.sleep(random.random() * self.heartbeat_s)  # spread them
        while True:
            usage = {
                "cpu_percent": round(random.uniform(5, 40), 1),
                "memory_used_mb": random.randint(8_000, 64_000),
                "memory_total_mb": CAPACITY["memory_mb"],
                "disk_used_percent": round(random.uniform(10, 60), 1),
            }
            sent = time.time()
            await ws.send(json.dumps({"type": "heartbeat", "seq": 0, "payload": {"usage": usage}}))
            if node.name in self.sampled:
                self.events.put(("beat", node.name, sent))
            await asyncio.sleep(self.heartbeat_s)


def worker_main(
    index: int,
    names: list[str],
    url: str,
    token: str,
    heartbeat_s: float,
    sampled: set[str],
    events: multiprocessing.Queue[Any],
    stop: multiprocessing.synchronize.Event,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through `stop`
    try:
        asyncio.run(Worker(index, names, url, token, heartbeat_s, sampled, events, stop).run())
    except BaseException as exc:
        events.put(("died", index, f"{type(exc).__name__}: {exc}"))
        raise


class Clients:
    """--procs client processes holding `nodes` simulated nodes; `close()` stops them."""

    def __init__(self, nodes: int, procs: int, url: str, token: str, heartbeat_s: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.events: multiprocessing.Queue[Any] = context.Queue()
        self.stop = context.Event()
        self.names = [f"sim-{i:05d}" for i in range(nodes)]
        step = max(1, nodes // LAG_SAMPLE)
        self.sampled = set(self.names[::step][:LAG_SAMPLE])
        self.progress: dict[int, dict[str, Any]] = {}
        self.beats: dict[str, list[float]] = {n: [] for n in self.sampled}
        self.died: list[str] = []
        self.processes = [
            context.Process(
                target=worker_main,
                args=(
                    i,
                    self.names[i::procs],
                    url,
                    token,
                    heartbeat_s,
                    self.sampled,
                    self.events,
                    self.stop,
                ),
                daemon=True,
            )
            for i in range(procs)
        ]
        for p in self.processes:
            p.start()

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def drain(self, wait_s: float = 0.0) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()) or 0.001)
            except queue.Empty:
                return
            if event[0] == "progress":
                self.progress[event[1]] = event[2]
            elif event[0] == "beat":
                self.beats[event[1]].append(event[2])
            elif event[0] == "died":
                self.died.append(f"client {event[1]}: {event[2]}")
            if time.monotonic() >= deadline and self.events.empty():
                return

    def total(self, key: str) -> int:
        return sum(int(p[key]) for p in self.progress.values())

    def summary(self, elapsed_s: float) -> str:
        errors = [e for p in self.progress.values() for e in p["errors"]]
        return (
            f"  {elapsed_s:.0f} s: {self.total('welcomed')}/{len(self.names)} connected, "
            f"{self.total('running')} running, {self.total('reconnects')} reconnects"
            + (f"; last error: {errors[-1]}" if errors else "")
        )

    def check(self) -> None:
        if self.died or any(p.exitcode not in (None, 0) for p in self.processes):
            raise RuntimeError(f"a client process died: {self.died}")

    def close(self) -> None:
        self.stop.set()
        for p in self.processes:
            p.join(timeout=20)
        for p in self.processes:
            if p.is_alive():
                p.kill()
                p.join()
        with contextlib.suppress(Exception):
            self.drain()


# --------------------------------------------------------------------------- the floor
async def _bare_server(port: int, ready: multiprocessing.synchronize.Event) -> None:
    async def session(ws: Any) -> None:
        hello = json.loads(await ws.recv())
        node = hello["payload"]["node"]
        welcome = {"node": node, "heartbeat_interval_s": 5}
        await ws.send(json.dumps({"type": "welcome", "seq": 1, "payload": welcome}))
        empty = {"epoch": 1, "allocations": []}
        await ws.send(json.dumps({"type": "assignments", "seq": 2, "payload": empty}))
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                json.loads(raw)

    async with websockets.serve(session, "127.0.0.1", port, max_size=16 * 1024 * 1024):
        ready.set()
        await asyncio.Future()


def bare_server_main(port: int, ready: multiprocessing.synchronize.Event) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_bare_server(port, ready))


class Usage:
    """CPU (% of one core over a window) and largest RSS of one process."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.rss_max = 0

    def start(self) -> None:
        times = self.process.cpu_times()
        self.cpu0 = times.user + times.system
        self.t0 = time.monotonic()
        self.rss_max = 0
        self.sample()

    def sample(self) -> None:
        self.rss_max = max(self.rss_max, self.process.memory_info().rss)

    def stop(self) -> dict[str, float]:
        self.sample()
        times = self.process.cpu_times()
        spent = time.monotonic() - self.t0
        return {
            "cpu_percent": 100 * (times.user + times.system - self.cpu0) / spent,
            "rss_mb": self.rss_max / 2**20,
            "window_s": spent,
        }


def group_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


def floor(nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    """The same sessions and heartbeats against a bare websockets server."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    port = free_port()
    server = context.Process(target=bare_server_main, args=(port, ready), daemon=True)
    server.start()
    clients = None
    try:
        if not ready.wait(30):
            raise RuntimeError("the bare websockets server did not start")
        assert server.pid is not None
        t0 = time.monotonic()
        clients = Clients(nodes, args.procs, f"ws://127.0.0.1:{port}/", "floor", args.heartbeat_s)
        while clients.total("welcomed") < nodes:
            clients.drain(0.2)
            clients.check()
            if time.monotonic() - t0 > args.timeout_s:
                raise TimeoutError(f"floor: {clients.total('welcomed')}/{nodes} connected")
        connect_s = time.monotonic() - t0
        usage = Usage(server.pid)
        usage.start()
        end = time.monotonic() + args.floor_s
        while time.monotonic() < end:
            clients.drain(0.5)
            usage.sample()
        return {"connect_s": connect_s, **usage.stop()}
    finally:
        if clients is not None:
            clients.close()
        server.kill()
        server.join()


# --------------------------------------------------------------------------- the server
class Server:
    """A real `armillary server` in `home`; `close()` stops it."""

    def __init__(self, home: Path, database_url: str | None, heartbeat_s: float) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A node-loss window of six heartbeats (the server wants at least two): a
        # simulated node whose loop lags under load is not declared lost.
        env = server_env(
            home,
            database_url,
            ARMILLARY_NODE_HEARTBEAT_S=str(heartbeat_s),
            ARMILLARY_NODE_LOST_AFTER_S=str(max(6.0, 6 * heartbeat_s)),
        )
        self.process = start_server(home, self.port, env)
        try:
            deadline = time.monotonic() + 60
            while not self._ready():
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited\n{self.log()}")
                if time.monotonic() > deadline:
                    raise TimeoutError("the server was not ready within 60 s")
                time.sleep(0.05)
            self.token = json.loads((home / "context.json").read_text())["token"]
            self.http = httpx.Client(
                base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=300
            )
        except BaseException:
            self.close()
            raise

    def _ready(self) -> bool:
        return ready(self.url)

    def log(self) -> str:
        path = self.home / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(AttributeError):
            self.http.close()


def documents(tenants: int, replicas: int) -> list[dict[str, Any]]:
    web = replicas - replicas // 2
    components: list[dict[str, Any]] = [
        {
            "name": "web",
            "command": COMMAND,
            "replicas": web,
            "ports": [{"name": "http"}],
            "health_check": {"http": {"path": "/healthz", "port": "http"}},
        }
    ]
    if replicas // 2:
        components.append({"name": "worker", "command": COMMAND, "replicas": replicas // 2})
    return [
        {"apiVersion": API, "kind": "Org", "metadata": {"name": ORG}, "spec": {}},
        {
            "apiVersion": API,
            "kind": "Stack",
            "metadata": {"name": STACK},
            "spec": {"components": components},
        },
        *(
            {
                "apiVersion": API,
                "kind": "Tenant",
                "metadata": {"name": f"t{i:05d}"},
                "spec": {"org": ORG, "stack": STACK},
            }
            for i in range(tenants)
        ),
    ]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def running_in_api(server: Server) -> int:
    return running_replicas(server.http)


def ready_in_api(server: Server) -> int:
    return ready_tenants(server.http)


def measure(server: Server, nodes: int, tenants: int, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"nodes": nodes, "tenants": tenants, "replicas": tenants * args.replicas}
    url = server.url.replace("http://", "ws://") + "/api/v1/nodes/connect"
    clients = Clients(nodes, args.procs, url, server.token, args.heartbeat_s)
    try:
        out["client_pids"] = clients.pids()
        t0 = time.monotonic()
        next_note = t0 + 10
        while clients.total("welcomed") < nodes:
            clients.drain(0.2)
            clients.check()
            if time.monotonic() >= next_note:
                note(clients.summary(time.monotonic() - t0))
                next_note = time.monotonic() + 10
            if server.process.poll() is not None:
                raise RuntimeError(f"the server exited\n{server.log()}")
            if time.monotonic() - t0 > args.timeout_s:
                break
        out["seen_connected"] = clients.total("welcomed")
        if out["seen_connected"] < nodes:
            # The server cannot take them all: measure what it does with those it took
            # (no tenants are applied; the row says how many were connected).
            out["connect_s"] = None
            note(f"  only {out['seen_connected']}/{nodes} connected in {args.timeout_s:.0f} s")
        else:
            out["connect_s"] = time.monotonic() - t0
            note(f"  {nodes} nodes connected in {out['connect_s']:.1f} s")
            if tenants and not apply_and_wait(server, clients, out, args):
                return out
        out.update(steady(server, clients, args))
        out["reconnects"] = clients.total("reconnects")
        out["client_errors"] = [e for p in clients.progress.values() for e in p["errors"]]
        return out
    finally:
        clients.close()


def apply_and_wait(
    server: Server, clients: Clients, out: dict[str, Any], args: argparse.Namespace
) -> bool:
    """Apply the fleet; wait for every replica running, then every tenant Ready (False:
    not within --timeout-s). Fills `out`."""
    tenants, replicas = out["tenants"], out["replicas"]
    docs = documents(tenants, args.replicas)
    chunks = [docs[i : i + CHUNK_DOCUMENTS] for i in range(0, len(docs), CHUNK_DOCUMENTS)]
    out["apply_chunks"] = len(chunks)
    usage = Usage(server.process.pid)
    usage.start()
    clients_cpu0 = group_cpu(clients.pids())
    a0 = time.monotonic()
    for chunk in chunks:
        response = server.http.post("/api/v1/apply", json={"documents": chunk})
        if response.status_code != 200:
            raise RuntimeError(f"apply: {response.status_code} {response.text[:2000]}")
        clients.drain()
    out["apply_s"] = time.monotonic() - a0
    note(f"  applied {len(docs)} documents in {out['apply_s']:.1f} s")
    deadline = a0 + args.timeout_s
    running_s = None
    next_note = time.monotonic() + 10
    while time.monotonic() < deadline:
        clients.drain(0.1)
        clients.check()
        usage.sample()
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited\n{server.log()}")
        if clients.total("running") >= replicas:
            running_s = time.monotonic() - a0
            break
        if time.monotonic() >= next_note:
            note(f"  {time.monotonic() - a0:.0f} s: {clients.total('running')}/{replicas} running")
            next_note = time.monotonic() + 10
    out["running_s"] = running_s
    out["seen_running"] = clients.total("running")
    out["apply_phase"] = usage.stop()
    out["apply_phase"]["clients_cpu_percent"] = (
        100 * (group_cpu(clients.pids()) - clients_cpu0) / out["apply_phase"]["window_s"]
    )
    if running_s is None:
        out["api_running"] = running_in_api(server)
        out["seen_ready"] = ready_in_api(server)
        return False
    note(f"  all {replicas} running in {running_s:.1f} s")
    # The clients count a replica when they send its report: let the reports land.
    confirm0 = time.monotonic()
    while (seen := running_in_api(server)) < replicas and time.monotonic() - confirm0 < 60:
        clients.drain(1.0)
    out["api_running"] = seen
    # Steady state begins once the controllers are done too: every tenant Ready.
    while (ready := ready_in_api(server)) < tenants and time.monotonic() < deadline:
        clients.drain(1.0)
    out["seen_ready"] = ready
    out["ready_s"] = time.monotonic() - a0 if ready >= tenants else None
    if out["ready_s"] is None:
        return False
    note(f"  all {tenants} tenants Ready in {out['ready_s']:.1f} s")
    return True


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def steady(server: Server, clients: Clients, args: argparse.Namespace) -> dict[str, Any]:
    usage = Usage(server.process.pid)
    for beats in clients.beats.values():
        beats.clear()
    usage.start()
    clients_cpu0 = group_cpu(clients.pids())
    stored: set[tuple[str, float]] = set()
    latencies: list[float] = []
    nodes_ms: list[float] = []
    t0 = time.monotonic()
    next_tenants = next_nodes = t0
    while (now := time.monotonic()) < t0 + args.steady_s:
        if now >= next_tenants:
            r0 = time.perf_counter()
            response = server.http.get("/api/v1/tenants", params={"limit": 100})
            latencies.append(1000 * (time.perf_counter() - r0))
            response.raise_for_status()
            next_tenants = now + 0.5
        if now >= next_nodes:
            r0 = time.perf_counter()
            items = server.http.get("/api/v1/nodes").json()["items"]
            nodes_ms.append(1000 * (time.perf_counter() - r0))
            for item in items:
                if item["name"] in clients.beats and item.get("heartbeatAt"):
                    stored.add((item["name"], parse_time(item["heartbeatAt"])))
            next_nodes = now + 2.0
        clients.drain(0.05)
        usage.sample()
    result = usage.stop()
    clients_cpu = 100 * (group_cpu(clients.pids()) - clients_cpu0) / result["window_s"]
    clients.drain()
    lags = []
    for name, at in stored:
        before = [s for s in clients.beats[name] if s <= at]
        if before:
            lags.append(at - max(before))
    return {
        "steady": {
            **result,
            "clients_cpu_percent": clients_cpu,
            "lag_samples": len(lags),
            "lag_p50_s": percentile(lags, 50),
            "lag_p99_s": percentile(lags, 99),
            "lag_max_s": max(lags) if lags else None,
            "tenants_requests": len(latencies),
            "tenants_p50_ms": percentile(latencies, 50),
            "tenants_p99_ms": percentile(latencies, 99),
            "nodes_requests": len(nodes_ms),
            "nodes_p50_ms": percentile(nodes_ms, 50),
        }
    }


def within(row: dict[str, Any]) -> bool:
    """Whether a run met every bound of the target (with no tenants: the steady ones)."""
    s = row.get("steady")
    if not s:
        return False
    if row.get("connect_s") is None:
        return False
    if row["tenants"] and (row.get("running_s") is None or row["running_s"] > TARGET["running_s"]):
        return False
    return (
        s["cpu_percent"] <= TARGET["cpu_percent"]
        and s["rss_mb"] <= TARGET["rss_mb"]
        and s["lag_p99_s"] is not None
        and s["lag_p99_s"] < TARGET["lag_p99_s"]
        and s["tenants_p99_ms"] is not None
        and s["tenants_p99_ms"] < TARGET["tenants_p99_ms"]
    )


def run(nodes: int, tenants: int, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": args.backend}
    print(f"{args.backend}: {nodes} nodes, {tenants} tenants", file=sys.stderr, flush=True)
    result["floor"] = floor(nodes, args)
    print(
        f"  floor: {result['floor']['cpu_percent']:.1f} % CPU, {result['floor']['rss_mb']:.0f} MB",
        file=sys.stderr,
        flush=True,
    )
    database_url = dbname = None
    try:
        with tempfile.TemporaryDirectory(prefix="armillary-fleetsim-") as tmp:
            if args.backend == "postgres":
                dbname = f"armillary_fleetsim_{secrets.token_hex(4)}"
                asyncio.run(pg_admin(f'CREATE DATABASE "{dbname}"'))
                database_url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{dbname}"
            server = Server(Path(tmp), database_url, args.heartbeat_s)
            try:
                result["server_pid"] = server.process.pid
                print(f"  server pid {server.process.pid}", file=sys.stderr, flush=True)
                result.update(measure(server, nodes, tenants, args))
            finally:
                server.close()
    finally:
        if dbname:
            asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
    result["within_target"] = within(result)
    return result


# --------------------------------------------------------------------------- table
def fmt(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]], timeout_s: float) -> str:
    head = [
        "backend",
        "nodes",
        "tenants (replicas)",
        "connect s",
        "apply s",
        "→ all running s",
        "→ all Ready s",
        "apply phase CPU %",
        "steady CPU %",
        "steady RSS MB",
        "hb lag p50 / p99 s",
        "tenants p50 / p99 ms",
        "floor CPU %",
        "floor RSS MB",
        "within",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r.get("steady") or {}
        if not r["tenants"] or r.get("connect_s") is None:
            running = "–"
        elif r.get("running_s") is not None:
            running = fmt(r["running_s"])
        else:
            running = f"> {timeout_s:.0f} TIMEOUT ({r.get('seen_running', 0):,}/{r['replicas']:,})"
        cells = [
            r["backend"],
            f"{r['nodes']:,}",
            f"{r['tenants']:,} ({r['replicas']:,})",
            fmt(r.get("connect_s"), ".1f")
            if r.get("connect_s") is not None
            else f"> {timeout_s:.0f} ({r.get('seen_connected', 0):,} connected)",
            fmt(r.get("apply_s"), ".1f"),
            running,
            fmt(r.get("ready_s"))
            if r.get("ready_s") is not None or not r["tenants"]
            else f"– ({r.get('seen_ready', 0):,}/{r['tenants']:,} Ready)",
            fmt((r.get("apply_phase") or {}).get("cpu_percent"), ".0f"),
            fmt(s.get("cpu_percent"), ".1f"),
            fmt(s.get("rss_mb"), ".0f"),
            f"{fmt(s.get('lag_p50_s'), '.3f')} / {fmt(s.get('lag_p99_s'), '.3f')}",
            f"{fmt(s.get('tenants_p50_ms'), '.0f')} / {fmt(s.get('tenants_p99_ms'), '.0f')}",
            fmt(r["floor"]["cpu_percent"], ".1f"),
            fmt(r["floor"]["rss_mb"], ".0f"),
            "yes" if r.get("within_target") else "no",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--tenants", type=int, default=5000)
    parser.add_argument(
        "--replicas", type=int, default=4, help="per tenant: web R - R//2, worker R//2"
    )
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--heartbeat-s", type=float, default=5.0)
    parser.add_argument("--steady-s", type=float, default=30.0)
    parser.add_argument("--floor-s", type=float, default=15.0)
    parser.add_argument("--timeout-s", type=float, default=300.0, help="give up on all running")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--ladder", type=int, nargs="+", help="node counts to try (tenants scaled with them)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    # SIGTERM (and SIGINT) unwind through the `finally` blocks: clients, server, database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = args.ladder or [args.nodes]
    steps = [(n, round(args.tenants * n / args.nodes)) for n in sizes]
    results: dict[str, Any] = {
        "machine": machine(),
        "options": {k: str(v) for k, v in vars(args).items() if k != "json"},
        "target": TARGET,
        "runs": [],
    }
    rows: list[dict[str, Any]] = results["runs"]
    try:
        for nodes, tenants in steps:
            rows.append(run(nodes, tenants, args))
            if args.ladder and not rows[-1]["within_target"]:
                break  # a larger step would not do better
    finally:
        if rows:
            print(table(rows, args.timeout_s), flush=True)
            held = [r["nodes"] for r in rows if r.get("within_target")]
            results["largest_within_target"] = max(held) if held else None
            if args.ladder:
                print(f"largest node count within the bounds: {results['largest_within_target']}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
