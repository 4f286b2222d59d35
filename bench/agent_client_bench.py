"""Benchmark: the client's CPU per agent call — the run worker's client against httpx.

Run:  .venv/bin/python bench/agent_client_bench.py [--calls 20000] [--concurrency 64]
          [--rounds 3] [--clients raw,armillary,httpx,other] [--compare-module FILE]
          [--json FILE]

One trivial agent (the one of bench/agent_runs_bench.py, a separate process on
127.0.0.1) answers every `POST /run` at once. This process, on uvloop as the server's
loop is, makes --calls calls with --concurrency in flight through each client in turn,
the clients alternating round by round, and measures its own CPU time (user + system)
per call and the calls per second:
  armillary    ingress/agent_http.Client (aiohttp), as the worker calls: the worker's
               headers, the answer's first 64 KiB kept
  httpx        one httpx.AsyncClient, limits of --concurrency connections
  other        --compare-module FILE: a module with the same `Client` interface (e.g.
               an earlier agent_http.py), to compare in the same run
The floor, in the same run: `raw`, one prebuilt request per call on --concurrency
kept-alive asyncio stream connections that only find the head's end and the
Content-Length (bench/ingress_bench.py RawHttp): no client can do much less.
CPU per call is what decides here: the worker shares its process with the rest of a
run. Calls per second also depend on the agent and on other load on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import uvloop
from ingress_bench import RawHttp
from procs import free_port, machine

from armillary.ingress import agent_http

BENCH = Path(__file__).resolve().parent
BODY = json.dumps({"run": "r1", "tenant": "t00", "event": {"id": "e1", "body": "x" * 200}})
HEADERS = {"Idempotency-Key": "r1", "User-Agent": "armillary-agent-runs"}
MAX_BYTES = 64 * 1024

Call = Callable[[], Awaitable[int]]


async def measure(call: Call, *, calls: int, concurrency: int) -> dict[str, float]:
    """`calls` calls, `concurrency` at once: CPU ms per call and calls per second."""
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await call()
            assert status == 200, status

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"cpu_ms_per_call": cpu_s * 1000 / calls, "calls_per_s": calls / wall_s}


def armillary_call(module: ModuleType, url: str, concurrency: int) -> tuple[Call, Any]:
    client = module.Client(keep=concurrency)
    body = BODY.encode()

    async def call() -> int:
        answer = await client.post(url, body, headers=HEADERS, max_bytes=MAX_BYTES)
        return int(answer.status)

    return call, client.aclose


def httpx_call(url: str, concurrency: int) -> tuple[Call, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(limits=limits, trust_env=False)
    body = BODY.encode()

    async def call() -> int:
        response = await client.post(
            url, content=body, headers={**HEADERS, "Content-Type": "application/json"}
        )
        return response.status_code

    return call, client.aclose


def raw_call(port: int, concurrency: int) -> tuple[Call, Any]:
    body = BODY.encode()
    request = (
        f"POST /run HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nIdempotency-Key: r1\r\n\r\n"
    ).encode() + body
    idle = [RawHttp("127.0.0.1", port) for _ in range(concurrency)]

    async def call() -> int:
        conn = idle.pop()
        try:
            return await conn.request(request)
        finally:
            idle.append(conn)

    async def close() -> None:
        for conn in idle:
            await conn.close()

    return call, close


async def run_rounds(args: argparse.Namespace, port: int) -> dict[str, list[dict[str, float]]]:
    url = f"http://127.0.0.1:{port}/run"
    makers: dict[str, Callable[[], tuple[Call, Any]]] = {
        "raw": lambda: raw_call(port, args.concurrency),
        "armillary": lambda: armillary_call(agent_http, url, args.concurrency),
        "httpx": lambda: httpx_call(url, args.concurrency),
    }
    if args.compare_module:
        spec = importlib.util.spec_from_file_location("compared", args.compare_module)
        assert spec is not None and spec.loader is not None
        other = importlib.util.module_from_spec(spec)
        sys.modules["compared"] = other  # its dataclasses look their module up
        spec.loader.exec_module(other)
        makers["other"] = lambda: armillary_call(other, url, args.concurrency)
    makers = {name: make for name, make in makers.items() if name in args.clients.split(",")}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in makers}
    for _ in range(args.rounds):
        for name, make in makers.items():
            call, close = make()
            await measure(call, calls=args.concurrency * 10, concurrency=args.concurrency)
            results[name].append(
                await measure(call, calls=args.calls, concurrency=args.concurrency)
            )
            await close()
    return results


def start_agent(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PORT": str(port), "BENCH_DIR": str(home), "BENCH_TENANT": "t00"}
    agent = subprocess.Popen(
        [sys.executable, str(BENCH / "agent_runs_bench.py"), "--agent"], env=env
    )
    deadline = time.monotonic() + 30
    while not (home / "port-t00").exists():
        if time.monotonic() > deadline or agent.poll() is not None:
            agent.kill()
            raise SystemExit("the agent did not start")
        time.sleep(0.05)
    return agent


def table(results: dict[str, list[dict[str, float]]]) -> str:
    floor = statistics.median(r["cpu_ms_per_call"] for r in results["raw"])
    lines = [
        "| client | CPU µs/call (median) | × raw | CPU µs/call per round | calls/s per round |",
        "|---|---|---|---|---|",
    ]
    for name, rounds in results.items():
        cpu = [r["cpu_ms_per_call"] * 1000 for r in rounds]
        rate = [r["calls_per_s"] for r in rounds]
        median = statistics.median(cpu)
        lines.append(
            f"| {name} | {median:.0f} | {median / 1000 / floor:.1f} | "
            f"{', '.join(f'{c:.0f}' for c in cpu)} | {', '.join(f'{r:,.0f}' for r in rate)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per client per round")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight at once")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="raw,armillary,httpx,other", help="which to run")
    parser.add_argument("--compare-module", type=Path, help="another agent_http.py")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agent-client-bench-") as tmp:
        port = free_port()
        agent = start_agent(Path(tmp), port)
        try:
            results = uvloop.run(run_rounds(args, port))
        finally:
            agent.terminate()
            agent.wait()
    print(table(results))
    if args.json:
        figures = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
        args.json.write_text(json.dumps({**figures, "results": results}, indent=2))


if __name__ == "__main__":
    main()
