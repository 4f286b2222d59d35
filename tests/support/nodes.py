"""A real `armillary node` daemon process for integration tests.

`NodeProcess` starts one and waits until the server lists it as connected; the
`node` fixture in tests/integration/conftest.py gives each module one.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.children import Child
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


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
