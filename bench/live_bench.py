"""Live channels under load: many subscribers on `resources` while changes pour in.

Scenario `subscribers` (the default): a real `armillary server` (SQLite, or Postgres
with `--backend postgres`); `--subscribers` WebSocket clients (200), spread over
`--workers` client processes so the clients' own parsing is not one core's, each
subscribed to the same Orgs; then `--rate` changes a second (1,000) for `--seconds`,
applied through `POST /api/v1/apply` in batches of `--batch` (each change relabels a
different Org of a pool, so no two changes of one Org fall in one burst; the pool
starts outside the subscribers' selector, so a subscription starts empty and an
Org's first change is its ADDED).

Each change carries its round (a label); each subscriber notes when each frame
arrived. Delivery latency is arrival minus the moment the round's apply was answered
(its commit: the feed publishes at commit, before the answer is written), clamped at
0: a lower bound, as a busy server answers late; and arrival minus the moment the
apply was sent (`sent→`): an upper bound, the write's own time included (`apply
p99`). Every subscriber checks its sequence: positions rising by exactly one (no
gap, nothing twice), and one frame per change. The server's RSS is read before the
load (subscribers connected) and after. The same measurement with one subscriber,
in the same run, is the floor.

Scenario `overview` is the dashboard's (bench/live_overview.py, imported only when
asked for).

    python bench/live_bench.py [--subscribers 200] [--rate 1000] [--seconds 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import procs
import websockets

API = "armillary.dev/v1"
POOL = 5000  # Orgs relabelled in turn: one Org changes once every POOL changes
_POSITION = re.compile(r'"resourceVersion":"[0-9a-f]+\.(\d+)"\}\}$')
_STEP = re.compile(r'"step":"(\d+)"')
_STAMP = re.compile(r'"t":"([0-9.]+)"')


# --- the subscribers (each worker process runs some)


async def _subscriber(
    url: str, token: str, side: str, ready: asyncio.Event, stats: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        sub = {"kinds": ["Org"], "selector": f"bench={side}"}
        await ws.send(
            json.dumps({"channel": "resources", "type": "subscribe", "id": "b", "payload": sub})
        )
        last = -1
        while True:
            message = await ws.recv()
            now = time.time()
            for line in str(message).split("\n"):
                if '"type":"SYNCED"' in line:
                    ready.set()
                    continue
                if '"type":"ping"' in line:
                    await ws.send('{"channel":"system","type":"pong"}')
                    continue
                if '"type":"MODIFIED"' not in line and '"type":"ADDED"' not in line:
                    if '"type":"error"' in line:
                        stats["errors"].append(line[:300])
                    continue
                found, step, stamp = _POSITION.search(line), _STEP.search(line), _STAMP.search(line)
                if found is None or step is None or stamp is None:
                    continue
                seq = int(found.group(1))
                if last >= 0 and seq != last + 1:
                    stats["gaps"] += 1
                last = seq
                stats["frames"] += 1
                # (round, ms since its apply was sent): the round's own write time is
                # taken off by the harness, which knows it
                stats["latency"][
                    (int(step.group(1)), round((now - float(stamp.group(1))) * 1000))
                ] += 1
                if stats["frames"] >= stats["expected"]:
                    return


async def _worker(url: str, token: str, side: str, count: int) -> None:
    """Run `count` subscribers; print READY once all are synced; read the number of
    changes to expect from stdin; print each one's figures as JSON when it has them
    (or when the deadline passes)."""
    all_stats: list[dict[str, Any]] = [
        {"frames": 0, "gaps": 0, "errors": [], "latency": Counter(), "expected": math.inf}
        for _ in range(count)
    ]
    readies = [asyncio.Event() for _ in range(count)]
    tasks = [
        asyncio.create_task(_subscriber(url, token, side, r, s))
        for r, s in zip(readies, all_stats, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    print("READY", flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    expected, deadline_s = (float(x) for x in line.split())
    for stats in all_stats:
        stats["expected"] = expected
    waiting = [t for t, st in zip(tasks, all_stats, strict=True) if st["frames"] < expected]
    if waiting:  # those that have every change already are done
        await asyncio.wait(waiting, timeout=deadline_s)
    for task in tasks:
        task.cancel()
    merged: Counter[tuple[int, int]] = Counter()
    for stats in all_stats:
        merged.update(stats.pop("latency"))
    latency = [[step, ms, n] for (step, ms), n in merged.items()]
    print(json.dumps({"subscribers": all_stats, "latency": latency}), flush=True)


# --- the load and the measurement


def org(i: int, stamp: str, step: int, *, side: str = "live") -> dict[str, Any]:
    labels = {"bench": side, "t": stamp, "step": str(step)}
    return {
        "apiVersion": API,
        "kind": "Org",
        "metadata": {"name": f"lb-{i}", "labels": labels},
        "spec": {},
    }


async def _load(
    url: str, token: str, side: str, rate: int, seconds: float, batch: int
) -> dict[str, Any]:
    """`rate` changes a second for `seconds`, `batch` at a time; how it went."""
    headers = {"Authorization": f"Bearer {token}"}
    interval = batch / rate
    rounds = int(rate * seconds / batch)
    took: list[float] = []
    behind = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        start = time.monotonic()
        for r in range(rounds):
            due = start + r * interval
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                behind += 1
            stamp = f"{time.time():.6f}"
            docs = [org((r * batch + k) % POOL, stamp, r, side=side) for k in range(batch)]
            sent = time.monotonic()
            answer = await http.post("/api/v1/apply", json={"documents": docs})
            answer.raise_for_status()
            took.append((time.monotonic() - sent) * 1000)
        elapsed = time.monotonic() - start
    per_round = list(took)
    took.sort()
    return {
        "took_ms": per_round,
        "changes": rounds * batch,
        "achieved_per_s": round(rounds * batch / elapsed),
        "apply_p50_ms": round(took[len(took) // 2], 1),
        "apply_p99_ms": round(took[min(len(took) - 1, int(len(took) * 0.99))], 1),
        "rounds_behind": behind,
    }


def _say(text: str) -> None:
    print(f"live_bench: {text}", file=sys.stderr, flush=True)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return math.nan


def _percentile(histogram: Counter[float], q: float) -> float:
    total = sum(histogram.values())
    if not total:
        return math.nan
    want = q * total
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= want:
            return value
    return max(histogram)


async def measure(
    url: str, token: str, pid: int, args: argparse.Namespace, subscribers: int
) -> dict[str, Any]:
    ws_url = url.replace("http://", "ws://") + "/api/v1/ws"
    side = f"run-{subscribers}"  # each round its own label: its subscriptions start empty
    workers = max(1, min(args.workers, subscribers))
    shares = [
        subscribers // workers + (1 if i < subscribers % workers else 0) for i in range(workers)
    ]
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            ws_url,
            token,
            side,
            str(n),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            limit=1 << 26,  # a worker's figures come as one JSON line
        )
        for n in shares
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 180)
            if line.strip() != b"READY":
                raise RuntimeError(f"a subscriber worker did not start: {line!r}")
        rss_before = _rss_mb(pid)
        _say(f"{subscribers} subscribers ready; applying changes")
        load = await _load(url, token, side, args.rate, args.seconds, args.batch)
        deadline_s = 60.0
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"{load['changes']} {deadline_s}\n".encode())
            await child.stdin.drain()
        _say(f"{load['changes']} changes applied; collecting")

        async def figures(child: asyncio.subprocess.Process) -> dict[str, Any]:
            assert child.stdout is not None
            found: dict[str, Any] = json.loads(await child.stdout.readline())
            return found

        parts = await asyncio.wait_for(
            asyncio.gather(*(figures(c) for c in children)), deadline_s + 60
        )
        rss_after = _rss_mb(pid)
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
            await child.wait()
    results = [r for part in parts for r in part["subscribers"]]
    took = load.pop("took_ms")
    histogram: Counter[float] = Counter()  # ms from the apply's answer (its commit)
    sent: Counter[float] = Counter()  # ms from the apply's request: the write included
    for part in parts:
        for step, ms, n in part["latency"]:
            histogram[round(max(0.0, ms - took[step]), 1)] += n
            sent[float(ms)] += n
    missed = sum(1 for r in results if r["frames"] != load["changes"] or r["gaps"])
    return {
        "subscribers": subscribers,
        **load,
        "frames": sum(r["frames"] for r in results),
        "subscribers_missing_events": missed,
        "errors": sorted({e for r in results for e in r["errors"]})[:5],
        "delivery_p50_ms": _percentile(histogram, 0.50),
        "delivery_p99_ms": _percentile(histogram, 0.99),
        "delivery_max_ms": max(histogram) if histogram else math.nan,
        "from_sent_p50_ms": _percentile(sent, 0.50),
        "from_sent_p99_ms": _percentile(sent, 0.99),
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
    }


async def _seed(url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        for start in range(0, POOL, 1000):
            # Outside the subscribers' selector until their first change (ADDED then):
            # a subscription starts with no listing to send.
            docs = [org(i, "0", 0, side="seed") for i in range(start, min(POOL, start + 1000))]
            (await http.post("/api/v1/apply", json={"documents": docs})).raise_for_status()


def run(backend: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="live-bench-") as tmp:
        home = Path(tmp)
        database_url = None
        if backend == "postgres":
            name = f"live_bench_{os.getpid()}"
            asyncio.run(procs.pg_admin(f"DROP DATABASE IF EXISTS {name}"))
            asyncio.run(procs.pg_admin(f"CREATE DATABASE {name}"))
            database_url = procs.POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
        port = procs.free_port()
        url = f"http://127.0.0.1:{port}"
        server = procs.start_server(home, port, procs.server_env(home, database_url))
        try:
            deadline = time.monotonic() + 120
            while not procs.ready(url):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the server did not start: see {home / 'server.log'}")
                time.sleep(0.2)
            token = json.loads((home / "context.json").read_text())["token"]
            asyncio.run(_seed(url, token))
            rows = []
            for subscribers in (1, args.subscribers):  # the floor first
                row = asyncio.run(measure(url, token, server.pid, args, subscribers))
                rows.append({"backend": backend, **row})
            return rows
        finally:
            procs.stop(server)
            if database_url is not None:
                asyncio.run(
                    procs.pg_admin(f"DROP DATABASE IF EXISTS {database_url.rsplit('/', 1)[1]}")
                )


COLUMNS = [
    ("backend", "backend"),
    ("subscribers", "subs"),
    ("achieved_per_s", "changes/s"),
    ("apply_p99_ms", "apply p99 ms"),
    ("delivery_p50_ms", "commit→p50 ms"),
    ("delivery_p99_ms", "commit→p99 ms"),
    ("delivery_max_ms", "max ms"),
    ("from_sent_p50_ms", "sent→p50 ms"),
    ("from_sent_p99_ms", "sent→p99 ms"),
    ("frames", "frames"),
    ("subscribers_missing_events", "missed"),
    ("rss_before_mb", "RSS before MB"),
    ("rss_after_mb", "RSS after MB"),
]


def table(rows: list[dict[str, Any]]) -> str:
    head = [title for _, title in COLUMNS]
    body = [[str(r.get(key, "")) for key, _ in COLUMNS] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = [
        " | ".join(x.rjust(w) for x, w in zip(line, widths, strict=True)) for line in [head, *body]
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        asyncio.run(_worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=["subscribers", "overview"], default="subscribers")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument("--rate", type=int, default=1000, help="changes a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=50, help="changes per apply")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    if args.scenario == "overview":
        try:  # the dashboard's scenario, in its own module
            overview = importlib.import_module("live_overview")
        except ModuleNotFoundError:
            sys.exit(
                "live_bench: the overview scenario lives in bench/live_overview.py, not here yet"
            )
        result: Any = overview.run(args)
    else:
        backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
        rows = [row for backend in backends for row in run(backend, args)]
        print(table(rows))
        result = {"scenario": "subscribers", "machine": procs.machine(), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
