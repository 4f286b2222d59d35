"""The `leader` scenario of bench/failover_bench.py (runnable on its own too).

    python bench/failover_bench.py --scenario leader [--rounds 10] [--json FILE]
    python bench/leader_failover.py [--trials 10] [--json FILE]

- `leader`: two `armillary server` replicas on one fresh Postgres database. Each
  trial kills the leader with kill -9 (then, in a second series, stops it cleanly with
  SIGTERM) and times, from the signal, until the survivor's first act as leader: the
  `servers` row it writes the moment it wins, read back through its own API
  (`GET /api/v1/servers`, polled every `--poll-s`). The killed replica is started
  again as a follower before the next trial, so the roles alternate. The floor is
  measured in the same run: one round trip of that poll to a live server, which bounds
  how finely the harness can see anything. Median and max of `--trials`.

Prints a table; `--json FILE` writes the raw figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import procs

SECRET_KEY = "Z4j0tS9o6m3Vq2l8kR1xW7yH5cN0bP4eD6fG8hJ2kL0="  # noqa: S105 - a bench's own
START_TIMEOUT_S = 60.0


class Replica:
    """One server replica of the bench: its home, port, name and process."""

    def __init__(self, root: Path, name: str, database_url: str) -> None:
        self.name = name
        self.home = root / name
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = procs.server_env(
            self.home,
            database_url,
            ARMILLARY_SECRET_KEY=SECRET_KEY,
            ARMILLARY_SERVER_NAME=name,
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = procs.start_server(self.home, self.port, self.env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not procs.ready(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: see {self.home}/server.log")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def reap(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=30)


def leader_of(http: httpx.Client) -> str | None:
    items = http.get("/api/v1/servers").json()["items"]
    leading = [s["name"] for s in items if s["leader"] and s["state"] == "live"]
    return leading[0] if len(leading) == 1 else None


def wait_leader(http: httpx.Client, name: str, *, poll_s: float, timeout_s: float) -> float:
    """Seconds (monotonic) at which `http`'s server first lists `name` as leader."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if leader_of(http) == name:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    raise TimeoutError(f"{name} did not lead within {timeout_s}s")


def leader_trials(
    replicas: list[Replica], token: str, *, sig: int, trials: int, poll_s: float
) -> list[float]:
    took: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(trials):
        with httpx.Client(base_url=replicas[0].url, headers=headers, timeout=5) as http:
            current = leader_of(http)
        dying = next(r for r in replicas if r.name == current)
        survivor = next(r for r in replicas if r is not dying)
        with httpx.Client(base_url=survivor.url, headers=headers, timeout=5) as http:
            began = time.monotonic()
            dying.signal(sig)
            try:
                led_at = wait_leader(http, survivor.name, poll_s=poll_s, timeout_s=60)
            except TimeoutError:
                print((survivor.home / "server.log").read_text()[-3000:], file=sys.stderr)
                print(http.get("/api/v1/servers").text, file=sys.stderr)
                raise
            took.append(led_at - began)
        dying.reap()
        dying.start()  # back as a follower, for the next trial
    return took


def poll_floor(replica: Replica, token: str, *, trials: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    took = []
    with httpx.Client(base_url=replica.url, headers=headers, timeout=5) as http:
        for _ in range(trials * 5):
            began = time.monotonic()
            leader_of(http)
            took.append(time.monotonic() - began)
    return took


def scenario_leader(args: argparse.Namespace) -> list[dict[str, Any]]:
    name = f"armillary_failover_{secrets.token_hex(4)}"
    asyncio.run(procs.pg_admin(f'CREATE DATABASE "{name}"'))
    database_url = procs.POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    root = Path(tempfile.mkdtemp(prefix="failover-"))
    replicas = [Replica(root, f"s{i}", database_url) for i in (1, 2)]
    try:
        replicas[0].start()
        token = json.loads((replicas[0].home / "context.json").read_text())["token"]
        (replicas[1].home / "context.json").write_text(json.dumps({"token": token}))
        replicas[1].start()
        floor = poll_floor(replicas[0], token, trials=args.trials)
        rows = [_row("floor: one poll of GET /api/v1/servers", floor)]
        for label, sig in (
            ("kill -9 of the leader", signal.SIGKILL),
            ("clean stop", signal.SIGTERM),
        ):
            took = leader_trials(replicas, token, sig=sig, trials=args.trials, poll_s=args.poll_s)
            rows.append(_row(f"{label} → new leader's first write", took))
        return rows
    finally:
        for replica in replicas:
            replica.reap()
        asyncio.run(procs.pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        shutil.rmtree(root, ignore_errors=True)


def _row(what: str, took: list[float]) -> dict[str, Any]:
    return {
        "scenario": "leader",
        "what": what,
        "median_s": round(statistics.median(took), 3),
        "max_s": round(max(took), 3),
        "samples_s": [round(t, 3) for t in took],
    }


SCENARIOS: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {
    "leader": scenario_leader,
}


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'scenario':<9} {'what':<52} {'median s':>9} {'max s':>7} {'n':>3}"]
    for row in rows:
        lines.append(
            f"{row['scenario']:<9} {row['what']:<52} {row['median_s']:>9.3f} "
            f"{row['max_s']:>7.3f} {len(row['samples_s']):>3}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", nargs="+", choices=sorted(SCENARIOS), default=["leader"])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--poll-s", type=float, default=0.02, help="harness poll interval")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {"machine": procs.machine(), "options": vars(args) | {"json": None}}
    rows: list[dict[str, Any]] = []
    for scenario in args.scenario:
        rows.extend(SCENARIOS[scenario](args))
    results["rows"] = rows
    print(table(rows), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
