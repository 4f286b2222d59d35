"""What the benchmarks share: a free port, what /proc says of a process, the processes
a run tagged, the Postgres server's maintenance connection, a real server started,
and the machine a result was measured on. Imported as `procs`
(each benchmark runs as `python bench/<name>.py`, which puts bench/ on the path)."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

POSTGRES_URL = os.environ.get(
    "ARMILLARY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def state_of(pid: int) -> str | None:
    """The process's state letter (R, S, Z, …), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.update(int(x) for x in f.read().split())
    except OSError:
        pass
    return found


def tagged(tag: str) -> list[int]:
    """Live processes whose environment carries BENCH_TAG=`tag`."""
    needle = f"BENCH_TAG={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read().split(b"\0") and state_of(int(entry)) not in ("Z", "X"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


async def pg_admin(sql: str) -> None:
    """Run one statement on the Postgres server's maintenance connection."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def server_env(home: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a benchmark's `armillary server`: its home, its store (SQLite
    in `home` unless `database_url`), quiet logs and rate limits out of the way (the
    harness polls the API; rate limiting is not what is measured), then `extra`."""
    env = {
        **os.environ,
        "ARMILLARY_HOME": str(home),
        "ARMILLARY_LOG_LEVEL": "warning",
        "ARMILLARY_RATE_LIMIT_PER_S": "1000000",
        "ARMILLARY_RATE_LIMIT_BURST": "10000000",
        **extra,
    }
    env.pop("ARMILLARY_DATABASE_URL", None)
    if database_url:
        env["ARMILLARY_DATABASE_URL"] = database_url
    return env


def machine() -> dict[str, Any]:
    """What a result file says of the machine it was measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_before": os.getloadavg(),
    }


def start_server(home: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A real `armillary server` on 127.0.0.1:`port` in `home`, its output appended to
    `home/server.log`."""
    with (home / "server.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "armillary", "server", "--port", str(port)],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(
    *processes: subprocess.Popen[bytes] | None, resume: bool = False, timeout_s: float = 60
) -> None:
    """Stop each process still running, in the order given (node daemons before the
    server: they stop their replicas): SIGTERM, then SIGKILL after `timeout_s`.
    `resume`: SIGCONT first, for a process a bench stopped."""
    for process in processes:
        if process is None or process.poll() is not None:
            continue
        if resume:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ready(url: str) -> bool:
    """Whether the server at `url` answers `/readyz` with 200 now."""
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def running_replicas(http: httpx.Client) -> int:
    """How many replicas `GET /api/v1/replicas` reports `running`."""
    items = http.get("/api/v1/replicas").json()["items"]
    return sum(1 for r in items if (r.get("report") or {}).get("state") == "running")


def ready_tenants(http: httpx.Client) -> int:
    """How many tenants `GET /api/v1/tenants` shows with `Ready` `True`."""
    items = http.get("/api/v1/tenants").json()["items"]
    return sum(
        1
        for t in items
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (t.get("status") or {}).get("conditions", [])
        )
    )
