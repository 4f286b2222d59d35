"""A real `armillary node` process for integration tests, and the helpers to wait on
what the server says about it (conditions with deadlines, never fixed sleeps)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

from tests.integration.child import Child
from tests.integration.serverproc import ServerProcess

T = TypeVar("T")
QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout_s: float = 30.0,
    every_s: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")


@dataclass
class NodeProcess(Child):
    server: ServerProcess
    data_dir: Path
    name: str = "node-a"
    cwd: Path = QUICKSTART
    stop_workloads_on_exit: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    stop_timeout_s: float = 60.0  # it stops every replica first

    def start(self) -> None:
        self.launch()
        wait_for(self.connected, timeout_s=30, what=f"node {self.name} to connect")

    def launch(self) -> None:
        """Start the daemon process without waiting for it to connect."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "armillary",
            "node",
            "--server",
            self.server.url,
            "--token",
            self.server.token,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
        ]
        if self.stop_workloads_on_exit:
            args.append("--stop-workloads-on-exit")
        with (self.data_dir / "daemon.log").open("ab") as log:
            self.process = subprocess.Popen(
                args, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def connected(self) -> bool:
        with self.server.client() as http:
            items = http.get("/api/v1/nodes").json()["items"]
        return any(n["name"] == self.name and n["connected"] for n in items)

    def log_path(self) -> Path:
        return self.data_dir / "daemon.log"


def replicas(
    server: ServerProcess, tenant: str, component: str | None = None
) -> list[dict[str, Any]]:
    params = {"tenant": tenant, **({"component": component} if component else {})}
    with server.client() as http:
        items: list[dict[str, Any]] = http.get("/api/v1/replicas", params=params).json()["items"]
    return items


def condition(server: ServerProcess, tenant: str, kind: str = "Ready") -> dict[str, Any] | None:
    with server.client() as http:
        response = http.get(f"/api/v1/tenants/{tenant}")
    if response.status_code != 200:
        return None
    for item in response.json().get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return None


def ready(server: ServerProcess, tenant: str) -> bool:
    found = condition(server, tenant)
    return bool(found and found["status"] == "True")


def processes_marked(mark: str) -> list[psutil.Process]:
    """Every live process whose environment carries ARMILLARY_TEST_MARK=mark."""
    found = []
    for process in psutil.process_iter():
        try:
            if (
                process.environ().get("ARMILLARY_TEST_MARK") == mark
                and process.status() != "zombie"
            ):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def http_ok(port: int, path: str = "/healthz") -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def apply(server: ServerProcess, *documents: dict[str, Any]) -> None:
    with server.client() as http:
        response = http.post("/api/v1/apply", json={"documents": list(documents)})
    assert response.status_code == 200, response.text


def delete(server: ServerProcess, plural: str, name: str) -> None:
    with server.client() as http:
        assert http.delete(f"/api/v1/{plural}/{name}").status_code == 200


def environ_pid(pid: int) -> dict[str, str]:
    return dict(psutil.Process(pid).environ())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != "zombie"
    except psutil.NoSuchProcess:
        return False
