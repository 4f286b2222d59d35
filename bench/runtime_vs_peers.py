"""Benchmark: the local node runtime against the process managers users would pick instead.

Run:  .venv/bin/python bench/runtime_vs_peers.py [--n 20 100 500] [--kills 20] [--idle-s 10]

Measured in this run, observed from outside through /proc exactly as the peer harness
(../shared/bench/peers) observes supervisord, circus and pm2:
  start    POST /api/v1/apply returned → N `sleep` replicas exec'd as children of the node
           daemon (and → the tenant's status says Ready)
  restart  kill -9 of one replica → its replacement exec'd (median over --kills kills,
           each of a different replica, so every kill is a first crash) (and → the API
           reports the new pid)
  daemon   node daemon RSS/PSS with N replicas; its CPU over an idle window
  stop     DELETE of the tenant → no replica left; leftovers counted by a tag in their env
The floor is measured in the same run: the peers' minimal os.wait() loop and raw Popen.
The peers' own figures (same machine kind, same method) are read from
../shared/bench/peers/results/raw and printed beside ours; they are not re-run here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from procs import children, free_port, server_env, state_of, tagged

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "bench" / "peers"
SLEEP = shutil.which("sleep") or "/bin/sleep"
ARGV = [SLEEP, "1000000"]
CLK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.002


# --------------------------------------------------------------------------- /proc


def argv_of(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode() for a in raw.rstrip(b"\0").split(b"\0")] if raw else []


def workers(manager: int) -> set[int]:
    return {
        p for p in children(manager) if argv_of(p) == ARGV and state_of(p) not in ("Z", "X", None)
    }


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def memory_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def wait(predicate: Any, timeout_s: float = 120.0) -> float:
    """Seconds until `predicate()` is true (polling every 2 ms)."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError
        time.sleep(POLL_S)
    return time.perf_counter() - start


def idle_cpu_pct(pid: int, window_s: float) -> float:
    before = cpu_ticks(pid)
    time.sleep(window_s)
    return 100.0 * (cpu_ticks(pid) - before) / CLK / window_s


# --------------------------------------------------------------------------- Armillary
class Armillary:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = server_env(home)
        self.server = subprocess.Popen(
            [sys.executable, "-m", "armillary", "server", "--port", str(self.port)],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait(self._ready, 60)
        self.token = json.loads((home / "context.json").read_text())["token"]
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )
        self.node = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "armillary",
                "node",
                "--server",
                self.url,
                "--token",
                self.token,
                "--name",
                "bench",
                "--data-dir",
                str(home / "node"),
                "--stop-workloads-on-exit",
            ],
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait(
            lambda: any(n["connected"] for n in self.http.get("/api/v1/nodes").json()["items"]), 60
        )
        self.http.post(
            "/api/v1/apply",
            json={
                "documents": [
                    {
                        "apiVersion": "armillary.dev/v1",
                        "kind": "Org",
                        "metadata": {"name": "bench"},
                        "spec": {},
                    }
                ]
            },
        )

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def tenant_ready(self, name: str) -> bool:
        status = self.http.get(f"/api/v1/tenants/{name}").json().get("status", {})
        return any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        )

    def run(self, n: int, *, kills: int, idle_s: float) -> dict[str, Any]:
        tag = f"arm-{n}-{random.randrange(10**6)}"
        name = f"bench-{n}"
        docs = [
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Stack",
                "metadata": {"name": name},
                "spec": {"components": [{"name": "sleeper", "command": ARGV, "replicas": n}]},
            },
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Tenant",
                "metadata": {"name": name},
                "spec": {"org": "bench", "stack": name, "env": {"BENCH_TAG": tag}},
            },
        ]
        node = self.node.pid
        response = self.http.post("/api/v1/apply", json={"documents": docs})
        response.raise_for_status()
        t0 = time.perf_counter()
        wait(lambda: len(workers(node)) >= n)
        all_running_s = time.perf_counter() - t0
        wait(lambda: self.tenant_ready(name))
        ready_s = time.perf_counter() - t0

        originals = list(workers(node))
        random.shuffle(originals)
        child, api = [], []
        for victim in originals[:kills]:
            before = workers(node)
            os.kill(victim, signal.SIGKILL)
            k0 = time.perf_counter()
            wait(lambda before=before: bool(workers(node) - before))
            child.append(time.perf_counter() - k0)
            new = (workers(node) - before).pop()
            wait(
                lambda new=new: any(
                    (r.get("report") or {}).get("pid") == new
                    for r in self.http.get("/api/v1/replicas", params={"tenant": name}).json()[
                        "items"
                    ]
                )
            )
            api.append(time.perf_counter() - k0)
        time.sleep(0.5)  # let reports and the state file settle before the idle window
        rss, pss = memory_kb(node)
        cpu = idle_cpu_pct(node, idle_s)
        server_rss, _ = memory_kb(self.server.pid)
        s0 = time.perf_counter()
        self.http.delete(f"/api/v1/tenants/{name}").raise_for_status()
        wait(lambda: not tagged(tag))
        stop_s = time.perf_counter() - s0
        return {
            "start_all_running_ms": all_running_s * 1000,
            "start_ready_ms": ready_s * 1000,
            "restart_child_median_ms": statistics.median(child) * 1000,
            "restart_child_max_ms": max(child) * 1000,
            "restart_api_median_ms": statistics.median(api) * 1000,
            "daemon_rss_mb": rss / 1024,
            "daemon_pss_mb": pss / 1024,
            "daemon_idle_cpu_pct": cpu,
            "server_rss_mb": server_rss / 1024,
            "stop_all_gone_ms": stop_s * 1000,
            "leftovers": len(tagged(tag)),
        }

    def close(self) -> None:
        for process in (self.node, self.server):
            process.terminate()
            process.wait(timeout=60)
        self.http.close()


# --------------------------------------------------------------------------- floor
def floor_loop(n: int, *, kills: int, idle_s: float) -> dict[str, Any]:
    """The peers' minimal os.wait() supervisor, measured the same way."""
    tag = f"floor-{n}-{random.randrange(10**6)}"
    script = PEERS / "mini_supervisor.py"
    t0 = time.perf_counter()
    manager = subprocess.Popen(
        [sys.executable, str(script), str(n), *ARGV], env={**os.environ, "BENCH_TAG": tag}
    )
    wait(lambda: len(workers(manager.pid)) >= n)
    start_s = time.perf_counter() - t0
    child = []
    for victim in random.sample(sorted(workers(manager.pid)), min(kills, n)):
        before = workers(manager.pid)
        os.kill(victim, signal.SIGKILL)
        k0 = time.perf_counter()
        wait(lambda before=before: bool(workers(manager.pid) - before))
        child.append(time.perf_counter() - k0)
    rss, pss = memory_kb(manager.pid)
    cpu = idle_cpu_pct(manager.pid, idle_s)
    s0 = time.perf_counter()
    manager.terminate()
    manager.wait()
    wait(lambda: not tagged(tag))
    return {
        "start_all_running_ms": start_s * 1000,
        "restart_child_median_ms": statistics.median(child) * 1000,
        "daemon_rss_mb": rss / 1024,
        "daemon_pss_mb": pss / 1024,
        "daemon_idle_cpu_pct": cpu,
        "stop_all_gone_ms": (time.perf_counter() - s0) * 1000,
        "leftovers": len(tagged(tag)),
    }


def raw_popen(n: int) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(ARGV, stdin=subprocess.DEVNULL) for _ in range(n)]
    spent = time.perf_counter() - t0
    for p in procs:
        p.kill()
        p.wait()
    return spent * 1000


# --------------------------------------------------------------------------- peers' stored figures
def peers(n: int) -> dict[str, dict[str, float]]:
    raw = PEERS / "results" / "raw"
    rows: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(raw.glob(f"round*/*-sleep-{n}.json")):
        data = json.loads(path.read_text())
        if not data.get("ok") or data["peer"].startswith("mini"):
            continue
        rows.setdefault(f"{data['peer']} ({data['profile']})", []).append(data)
    out = {}
    for label, runs in rows.items():
        out[label] = {
            "start_all_running_ms": statistics.median(
                r["start"]["all_workers_running_s"] for r in runs
            )
            * 1000,
            "restart_child_median_ms": statistics.median(
                r["restart"]["child_median_s"] for r in runs
            )
            * 1000,
            "daemon_rss_mb": statistics.median(r["manager"]["rss_kb"] for r in runs) / 1024,
            "daemon_idle_cpu_pct": statistics.median(r["manager"]["idle_cpu_pct"] for r in runs),
            "stop_all_gone_ms": statistics.median(r["stop"]["all_gone_s"] for r in runs) * 1000,
        }
    return out


COLUMNS = [
    ("start_all_running_ms", "start→N running ms", "{:.0f}"),
    ("start_ready_ms", "→ status Ready ms", "{:.0f}"),
    ("restart_child_median_ms", "kill→replaced ms (median)", "{:.1f}"),
    ("restart_api_median_ms", "→ API shows it ms", "{:.1f}"),
    ("daemon_rss_mb", "manager RSS MB", "{:.1f}"),
    ("daemon_idle_cpu_pct", "idle CPU %", "{:.2f}"),
    ("stop_all_gone_ms", "stop→none left ms", "{:.0f}"),
    ("leftovers", "leftovers", "{}"),
]


def table(n: int, rows: dict[str, dict[str, Any]]) -> str:
    head = ["N=" + str(n), *[title for _, title, _ in COLUMNS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, values in rows.items():
        cells = [fmt.format(values[key]) if key in values else "–" for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="armillary-bench-") as tmp:
        armillary = Armillary(Path(tmp))
        try:
            for n in args.n:
                rows: dict[str, dict[str, Any]] = {}
                rows["armillary"] = armillary.run(n, kills=min(args.kills, n), idle_s=args.idle_s)
                rows["floor: os.wait() loop"] = floor_loop(
                    n, kills=min(args.kills, n), idle_s=args.idle_s / 2
                )
                rows["floor: raw Popen"] = {"start_all_running_ms": raw_popen(n)}
                rows.update({f"{k} [stored]": v for k, v in peers(n).items()})
                results[str(n)] = rows
                print(table(n, rows), flush=True)
                print(flush=True)
        finally:
            armillary.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
