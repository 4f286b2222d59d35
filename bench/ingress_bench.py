"""Benchmark: webhook ingress, signed GitHub deliveries verified and durably stored.

Run:  .venv/bin/python bench/ingress_bench.py [--backend sqlite|postgres|both]
          [--duration-s 20] [--concurrency 1 4 16] [--generators 1] [--client raw|httpx]
          [--body-bytes 1024] [--agent-worker off|on] [--metrics on|off|both]
          [--src DIR] [--json FILE]

For each backend a real `python -m armillary server` (one uvicorn worker) starts in a
temporary ARMILLARY_HOME (Postgres: a fresh database, dropped afterwards), with the
API rate limit set out of the way (the webhook source has no limit of its own). A
Secret, an Org, a Stack with one `sleep` component, a Tenant routing `acme/app` and a
`github` WebhookSource are applied, and one delivery is checked by hand. With
--agent-worker off (the default) the server only queues the run each event starts
(ARMILLARY_AGENT_RUN_WORKER=false, an ingress replica); with on it also works them off,
and, no agent answering, each run fails its one attempt. After a 3 s
warm-up, for each --concurrency a closed-loop load generator (asyncio, that many
keep-alive connections, in --generators processes) runs for --duration-s against:
  /healthz   GET /healthz of the same server: its ceiling, nothing stored
  webhooks   POST /webhooks/<source>: every delivery signed (X-Hub-Signature-256),
             with a unique X-GitHub-Delivery and a unique body, so replay protection
             never answers "duplicate"; each is verified, routed and committed with its
             audit row before the 202
Latency is measured in the generator, request written → response read. First the
generator's own ceiling is measured (5 s per concurrency) against a stub HTTP server
that answers every request with a canned 202. CPU is read from /proc over the same
window: the server (all its threads), the generator, and the rest of the machine
(Postgres when it is the store; anything else running spoils the figures and shows
up there). After the last load the server is killed with SIGKILL and the store is
counted directly (sqlite3 / asyncpg): the events and their audit rows must equal the
202s answered.

--metrics both measures each backend twice in the same run, a server with
ARMILLARY_METRICS=false (no request layer, no query timing, no /metrics) and one with
metrics on, alternating (off, on, off, on: --rounds 2) so that a slow patch of a
shared machine falls on both; the last table compares their 202/s.
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
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from procs import (
    POSTGRES_URL,
    free_port,
    machine,
    pg_admin,
    ready,
    server_env,
    start_server,
)

API = "armillary.dev/v1"
SOURCE = "github-bench"
REPO = "acme/app"
SECRET_VALUE = "bench-" + "s3cr3t" * 6
WARMUP_S = 3.0
STUB_S = 5.0
CLK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- helpers


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK


def machine_busy_s() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy, all cores together, and those the
    hypervisor stole (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    return (user + nice + system + irq + softirq) / CLK, steal / CLK


def calibrate() -> float:
    """Milliseconds of CPU for a fixed pure-Python loop (the best of three): how fast
    this machine runs Python right now. Shared VMs drift by tens of percent."""

    def once() -> float:
        t0, x = time.process_time(), 0
        for i in range(1_000_000):
            x += i * i % 7
        return time.process_time() - t0

    return 1000 * min(once() for _ in range(3))


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------- deliveries
def push_body(seq: str, size: int) -> bytes:
    """A GitHub-style push payload, unique by `seq`, padded to about `size` bytes."""
    after = hashlib.sha1(seq.encode(), usedforsecurity=False).hexdigest()
    doc: dict[str, Any] = {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": after,
        "repository": {"id": 1296269, "full_name": REPO, "private": True},
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat", "id": 1},
        "head_commit": {"id": after, "message": f"bench {seq}", "author": {"name": "octocat"}},
    }
    raw = json.dumps(doc, separators=(",", ":"))
    pad = size - len(raw) - len(',"pad":""')
    if pad > 0:
        doc["pad"] = "x" * pad
        raw = json.dumps(doc, separators=(",", ":"))
    return raw.encode()


def signed_headers(body: bytes, delivery: str) -> dict[str, str]:
    digest = hmac.new(SECRET_VALUE.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature-256": f"sha256={digest}",
    }


# --------------------------------------------------------------------------- load generator
class RawHttp:
    """One keep-alive HTTP/1.1 connection, spoken directly on asyncio streams: a
    request is prebuilt bytes, a response is its head and Content-Length (or chunked)
    body. A fraction of httpx's CPU per request, which matters on a machine whose
    cores the generator shares with the server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(raw)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                length = int(lower[at + 17 :].split(b"\r\n", 1)[0])
                await self.reader.readexactly(length)
            elif b"\r\ntransfer-encoding: chunked" in lower:
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await self.reader.readexactly(size + 2)
                    if size == 0:
                        break
            if b"\r\nconnection: close" in lower:
                await self.close()
            return status
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            await self.close()
            raise

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def post_request(authority: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST /webhooks/{SOURCE} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _load(
    url: str,
    target: str,
    duration_s: float,
    concurrency: int,
    body_bytes: int,
    seed: str,
    client: str,
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    parsed = httpx.URL(url)
    authority = f"{parsed.host}:{parsed.port}"
    healthz = f"GET /healthz HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    http = httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(30.0))
    deadline = time.perf_counter() + duration_s

    async def worker(w: int) -> None:
        raw = RawHttp(parsed.host, parsed.port or 80)
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            body = b""
            headers: dict[str, str] = {}
            if target != "healthz":  # webhooks, or the stub
                body = push_body(f"{seed}-{w}-{n}", body_bytes)
                headers = signed_headers(body, str(uuid.uuid4()))
            try:
                if client == "raw":
                    request = post_request(authority, body, headers) if body else healthz
                    t0 = time.perf_counter()
                    status = await asyncio.wait_for(raw.request(request), 30)
                else:
                    t0 = time.perf_counter()
                    if body:
                        sent = http.post(f"/webhooks/{SOURCE}", content=body, headers=headers)
                    else:
                        sent = http.get("/healthz")
                    status = (await sent).status_code
                latencies.append(time.perf_counter() - t0)
                statuses[str(status)] += 1
            except (httpx.HTTPError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                statuses[type(exc).__name__] += 1
        await raw.close()

    started = time.perf_counter()
    cpu0 = time.process_time()
    try:
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    finally:
        await http.aclose()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    return {"latencies": latencies, "statuses": dict(statuses), "elapsed_s": elapsed, "cpu_s": cpu}


def _load_in_process(args: tuple[str, str, float, int, int, str, str]) -> dict[str, Any]:
    return asyncio.run(_load(*args))


def load(
    url: str,
    target: str,
    *,
    duration_s: float,
    concurrency: int,
    generators: int,
    body_bytes: int,
    client: str,
    server_pid: int,
) -> dict[str, Any]:
    """Run the generator(s) against `url` and merge what they saw, with the CPU of the
    server (`server_pid`), of the generator and of the rest of the machine (Postgres,
    when it is the store; the kernel's share not charged to a process) over the same
    window."""
    seed = uuid.uuid4().hex[:8]
    generators = max(1, min(generators, concurrency))
    per = [concurrency // generators + (i < concurrency % generators) for i in range(generators)]
    jobs = [
        (url, target, duration_s, c, body_bytes, f"{seed}g{i}", client) for i, c in enumerate(per)
    ]
    server0, (machine0, steal0), t0 = cpu_s(server_pid), machine_busy_s(), time.perf_counter()
    if len(jobs) == 1:
        parts = [_load_in_process(jobs[0])]
    else:
        with ProcessPoolExecutor(len(jobs)) as pool:
            parts = list(pool.map(_load_in_process, jobs))
    wall = time.perf_counter() - t0
    server_cpu = cpu_s(server_pid) - server0
    machine1, steal1 = machine_busy_s()
    machine_cpu, steal = machine1 - machine0, steal1 - steal0
    latencies = sorted(x for p in parts for x in p["latencies"])
    statuses: Counter[str] = Counter()
    for p in parts:
        statuses.update(p["statuses"])
    elapsed = max(p["elapsed_s"] for p in parts)
    generator_cpu = sum(p["cpu_s"] for p in parts)
    rest_cpu = machine_cpu - server_cpu - generator_cpu  # Postgres, if it is the store
    ok_status = "200" if target == "healthz" else "202"
    ok = statuses.get(ok_status, 0)
    requests = sum(statuses.values())
    return {
        "target": target,
        "concurrency": concurrency,
        "generators": len(jobs),
        "elapsed_s": elapsed,
        "requests": requests,
        "ok": ok,
        "ok_per_s": ok / elapsed,
        "errors": requests - ok,
        "statuses": dict(statuses),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] if latencies else float("nan")) * 1000,
        "server_cpu_pct": 100 * server_cpu / wall,
        "server_cpu_ms_per_request": 1000 * server_cpu / max(1, requests),
        "generator_cpu_pct": 100 * generator_cpu / wall,
        "rest_cpu_pct": 100 * rest_cpu / wall,
        "rest_cpu_ms_per_request": 1000 * rest_cpu / max(1, requests),
        "steal_pct": 100 * steal / wall,
    }


# --------------------------------------------------------------------------- stub server
STUB_RESPONSE = (
    b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
)


class _Stub(asyncio.Protocol):
    """Answers every HTTP/1.1 request (headers and Content-Length body) with a canned 202."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(STUB_RESPONSE)


def stub_main(port: int) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Stub, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def stub_ceiling(args: argparse.Namespace, concurrency: int) -> dict[str, Any]:
    port = free_port()
    stub = subprocess.Popen([sys.executable, __file__, "--stub", str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # The stub answers any path: the generator builds and signs exactly what the
        # server gets. A few seconds are enough for a figure this far from the server's.
        return load(
            f"http://127.0.0.1:{port}",
            "stub",
            duration_s=min(STUB_S, args.duration_s),
            concurrency=concurrency,
            generators=args.generators,
            body_bytes=args.body_bytes,
            client=args.client,
            server_pid=stub.pid,
        )
    finally:
        stub.terminate()
        stub.wait(timeout=10)


# --------------------------------------------------------------------------- the server
def documents() -> list[dict[str, Any]]:
    return [
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
            "spec": {"components": [{"name": "agent", "command": ["sleep", "100000"]}]},
        },
        {
            "apiVersion": API,
            "kind": "Tenant",
            "metadata": {"name": "acme-app"},
            "spec": {"org": "acme", "stack": "agent", "routing": {"github": [REPO]}},
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


class Server:
    """`python -m armillary server` in `home`, with the bench documents applied and one
    delivery checked by hand."""

    def __init__(
        self,
        home: Path,
        database_url: str | None,
        src: Path | None,
        *,
        agent_worker: bool = True,
        metrics: bool = True,
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = server_env(
            home,
            database_url,
            # Where the tree queues an agent run per routed event, no agent answers here:
            # one attempt per run, as with a healthy agent, not a retry storm.
            ARMILLARY_AGENT_RUN_MAX_ATTEMPTS="1",
            # off: an ingress replica, queueing runs for another replica to call agents
            ARMILLARY_AGENT_RUN_WORKER="true" if agent_worker else "false",
            ARMILLARY_METRICS="true" if metrics else "false",
        )
        if src is not None:  # another tree of the package, ahead of the installed one
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
        self.process = start_server(home, self.port, env)
        try:
            self._prepare()
        except BaseException:
            self.kill()  # never leave a server behind
            raise

    def _prepare(self) -> None:
        """Wait until ready, apply the documents, check one delivery by hand."""
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + self.log())
            time.sleep(0.05)
        token = json.loads((self.home / "context.json").read_text())["token"]
        with httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as http:
            applied = http.post("/api/v1/apply", json={"documents": documents()})
            if applied.status_code != 200:
                raise RuntimeError(f"apply: {applied.status_code} {applied.text}\n{self.log()}")
            body = push_body("probe", 256)
            probe = http.post(
                f"/webhooks/{SOURCE}", content=body, headers=signed_headers(body, "probe")
            )
        if probe.status_code != 202 or probe.json().get("state") != "routed":
            raise RuntimeError(f"probe delivery: {probe.status_code} {probe.text}\n{self.log()}")
        self.queues_runs = "run" in probe.json()  # this tree starts an agent run per event

    def _ready(self) -> bool:
        return ready(self.url)

    def log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")[-4000:]

    def log_lines(self) -> int:
        return len((self.home / "server.log").read_bytes().splitlines())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


# --------------------------------------------------------------------------- counting the store
COUNT_EVENTS = "SELECT count(*) FROM events WHERE source = $1"
COUNT_AUDIT = (
    "SELECT count(*) FROM audit_log WHERE principal = $1 AND verb = 'receive' "
    "AND outcome = 'routed'"
)


def count_sqlite(path: Path) -> tuple[int, int]:
    db = sqlite3.connect(path)
    try:
        events = db.execute(COUNT_EVENTS.replace("$1", "?"), (SOURCE,)).fetchone()[0]
        audit = db.execute(COUNT_AUDIT.replace("$1", "?"), (f"webhook:{SOURCE}",)).fetchone()[0]
    finally:
        db.close()
    return int(events), int(audit)


async def count_postgres(url: str) -> tuple[int, int]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        events = await conn.fetchval(COUNT_EVENTS, SOURCE)
        audit = await conn.fetchval(COUNT_AUDIT, f"webhook:{SOURCE}")
    finally:
        await conn.close()
    return int(events), int(audit)


# --------------------------------------------------------------------------- one backend
def run_backend(backend: str, args: argparse.Namespace, *, metrics: bool = True) -> dict[str, Any]:
    database_url = dbname = None
    if backend == "postgres":
        dbname = f"armillary_bench_{secrets.token_hex(4)}"
        asyncio.run(pg_admin(f'CREATE DATABASE "{dbname}"'))
        database_url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{dbname}"
    runs: list[dict[str, Any]] = []
    calibration_ms = calibrate()
    try:
        with tempfile.TemporaryDirectory(prefix="armillary-ingress-") as tmp:
            home = Path(tmp)
            server = Server(
                home,
                database_url,
                args.src,
                agent_worker=args.agent_worker == "on",
                metrics=metrics,
            )
            try:
                common = {
                    "generators": args.generators,
                    "body_bytes": args.body_bytes,
                    "client": args.client,
                    "server_pid": server.process.pid,
                }
                top = max(args.concurrency)
                warm = load(server.url, "webhooks", duration_s=WARMUP_S, concurrency=top, **common)
                accepted = 1 + warm["ok"]  # the probe, and the warm-up
                for c in args.concurrency:
                    d = args.duration_s
                    healthz = load(server.url, "healthz", duration_s=d, concurrency=c, **common)
                    hooks = load(server.url, "webhooks", duration_s=d, concurrency=c, **common)
                    accepted += hooks["ok"]
                    runs.append({"concurrency": c, "healthz": healthz, "webhooks": hooks})
                    print(f"{backend} c={c}: {hooks['ok_per_s']:.0f}/s", file=sys.stderr)
                log_lines = server.log_lines()
                server.kill()  # SIGKILL: what was answered 202 must already be committed
                if database_url:
                    stored, audited = asyncio.run(count_postgres(database_url))
                else:
                    stored, audited = count_sqlite(home / "armillary.db")
            finally:
                server.kill()
    finally:
        if dbname:
            asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
    return {
        "backend": backend,
        "metrics": metrics,
        "calibration_ms": calibration_ms,
        "runs": runs,
        "warmup": {"ok": warm["ok"], "errors": warm["errors"]},
        "server_log_lines": log_lines,
        "queues_agent_runs": server.queues_runs,
        "durability": {
            "answered_202": accepted,
            "events_stored": stored,
            "audit_rows": audited,
            "ok": stored == accepted and audited == accepted,
        },
    }


# --------------------------------------------------------------------------- tables
def tables(results: dict[str, Any], args: argparse.Namespace) -> str:
    out = [
        f"| generator ceiling ({args.client} client, stub server) | req/s | p50 ms | p99 ms "
        "| CPU % generator / stub |",
        "|---|---|---|---|---|",
    ]
    for r in results["stub"]:
        out.append(
            f"| c={r['concurrency']} | {r['ok_per_s']:,.0f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['generator_cpu_pct']:.0f} / {r['server_cpu_pct']:.0f} |"
        )
    for backend in measured(results):
        out += [
            "",
            f"{backend}: CPU calibration {results[backend]['calibration_ms']:.0f} ms "
            "(a fixed Python loop; lower is a faster machine); agent run worker "
            f"{args.agent_worker}",
            "",
            f"| {backend}: POST /webhooks | 202/s | p50 ms | p95 ms | p99 ms | errors "
            "| CPU % server / generator / rest | CPU ms per event: server / rest "
            "| GET /healthz req/s | /healthz p50 / p99 ms |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for run in results[backend]["runs"]:
            h, w = run["healthz"], run["webhooks"]
            cells = [
                f"c={run['concurrency']}",
                f"{w['ok_per_s']:,.0f}",
                f"{w['p50_ms']:.1f}",
                f"{w['p95_ms']:.1f}",
                f"{w['p99_ms']:.1f}",
                str(w["errors"]),
                f"{w['server_cpu_pct']:.0f} / {w['generator_cpu_pct']:.0f} / "
                f"{w['rest_cpu_pct']:.0f}",
                f"{w['server_cpu_ms_per_request']:.1f} / {w['rest_cpu_ms_per_request']:.1f}",
                f"{h['ok_per_s']:,.0f}",
                f"{h['p50_ms']:.1f} / {h['p99_ms']:.1f}",
            ]
            out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "| durability (after SIGKILL) | answered 202 | events stored | audit rows | equal |",
        "|---|---|---|---|---|",
    ]
    for backend in measured(results):
        if backend in results:
            d = results[backend]["durability"]
            out.append(
                f"| {backend} | {d['answered_202']} | {d['events_stored']} "
                f"| {d['audit_rows']} | {'yes' if d['ok'] else 'NO'} |"
            )
    out += comparison(results)
    return "\n".join(out)


def measured(results: dict[str, Any]) -> list[str]:
    """The keys of the measured servers, in the order they ran."""
    return [k for k, v in results.items() if isinstance(v, dict) and "durability" in v]


def comparison(results: dict[str, Any]) -> list[str]:
    """With --metrics both: metrics on against off, per backend and concurrency, each
    side's mean over its rounds: 202/s, and the server's CPU per delivery (steadier
    than 202/s on a machine something else also uses)."""
    sums: dict[tuple[str, int, bool], list[tuple[float, float]]] = {}
    for key in measured(results):
        r = results[key]
        for run in r["runs"]:
            w = run["webhooks"]
            sums.setdefault((r["backend"], run["concurrency"], r["metrics"]), []).append(
                (w["ok_per_s"], w["server_cpu_ms_per_request"])
            )
    if not any(metrics is False for _, _, metrics in sums):
        return []
    out = [
        "",
        "| metrics on vs off (same run) | 202/s off | 202/s on | on / off "
        "| server CPU µs per delivery off | on | on / off |",
        "|---|---|---|---|---|---|---|",
    ]
    for (backend, concurrency, metrics), off in sorted(sums.items()):
        on = sums.get((backend, concurrency, True))
        if metrics or not on:
            continue
        rate_off, rate_on = (sum(x[0] for x in side) / len(side) for side in (off, on))
        cpu_off, cpu_on = (sum(x[1] for x in side) / len(side) * 1000 for side in (off, on))
        out.append(
            f"| {backend} c={concurrency} ({len(off)} rounds each) | {rate_off:,.0f} "
            f"| {rate_on:,.0f} | {rate_on / rate_off:.1%} | {cpu_off:.0f} | {cpu_on:.0f} "
            f"| {cpu_on / cpu_off:.1%} |"
        )
    return out


def tree(src: Path | None) -> dict[str, Any]:
    """Which code the server runs: the repository's commit and whether src/ differs."""
    if src is not None:
        return {"src": str(src)}
    root = Path(__file__).resolve().parents[1]

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "src_modified": bool(git("status", "-s", "src"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration-s", type=float, default=20.0, help="per load, in seconds")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4, 16], help="connections, in total"
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--generators", type=int, default=1, help="generator processes")
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="the generator's HTTP client: raw asyncio streams, or httpx (heavier)",
    )
    parser.add_argument("--body-bytes", type=int, default=1024, help="size of each delivery")
    parser.add_argument(
        "--src", type=Path, help="run the server from this source tree (e.g. a `git archive`)"
    )
    parser.add_argument(
        "--agent-worker",
        choices=["on", "off"],
        default="off",
        help="whether the measured server also calls agents with the runs it queues (no "
        "agent answers here: each run fails once); off is an ingress-only replica",
    )
    parser.add_argument(
        "--metrics",
        choices=["on", "off", "both"],
        default="on",
        help="ARMILLARY_METRICS of the measured server; both: off and on, alternating",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="with --metrics both: off/on pairs per backend"
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--stub", type=int, help=argparse.SUPPRESS)  # internal: the stub server
    args = parser.parse_args()
    if args.stub:
        stub_main(args.stub)
        return
    # SIGTERM (and SIGINT, which a shell's background job ignores) unwinds through the
    # `finally` blocks: the server is killed and the Postgres database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {
        "machine": machine(),
        "tree": tree(args.src),
        "options": {k: str(v) for k, v in vars(args).items() if k not in ("json", "stub")},
    }
    if os.getloadavg()[0] > 0.5:
        print(
            f"warning: load average {os.getloadavg()[0]:.2f} before the run: "
            "something else is using the CPUs the figures depend on",
            file=sys.stderr,
        )
    results["stub"] = [stub_ceiling(args, c) for c in args.concurrency]
    for backend in backends:
        if args.metrics != "both":
            results[backend] = run_backend(backend, args, metrics=args.metrics == "on")
            continue
        for i in range(args.rounds):
            for metrics in (False, True):
                key = f"{backend} metrics {'on' if metrics else 'off'} #{i + 1}"
                results[key] = run_backend(backend, args, metrics=metrics)
    print(tables(results, args), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    failed = [b for b in measured(results) if not results[b]["durability"]["ok"]]
    if failed:
        sys.exit(f"durability check failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
