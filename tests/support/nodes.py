"""A real `armillary node` daemon process for integration tests.

`NodeProcess` starts one and waits until the server lists it as connected; the
`node` fixture in tests/integration/conftest.py gives each module one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.children import Child
from tests.support.servers import ServerProcess
from tests.support.traversal import open_to_tenants
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
    tenant_uids: str | None = None  # --tenant-uids; None: the daemon's default

    def start(self) -> None:
        self.launch()
        wait_for(self.connected, timeout_s=30, what=f"node {self.name} to connect")

    def launch(self) -> None:
        """Start the daemon process without waiting for it to connect."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        open_to_tenants(self.data_dir)
        args = [
            sys.executable,
            "-m",
            "armillary",
            "node",
            "--server",
            self.server.url,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
        ]
        if self.stop_workloads_on_exit:
            args.append("--stop-workloads-on-exit")
        if self.tenant_uids is not None:
            args += ["--tenant-uids", self.tenant_uids]
        # The token goes by environment: a command line is readable by every user,
        # the replicas' users included.
        env = {**os.environ, "ARMILLARY_TOKEN": self.server.token}
        with (self.data_dir / "daemon.log").open("ab") as log:
            self.process = subprocess.Popen(
                args,
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def connected(self) -> bool:
        with self.server.client() as http:
            items = http.get("/api/v1/nodes").json()["items"]
        return any(n["name"] == self.name and n["connected"] for n in items)

    def log_path(self) -> Path:
        return self.data_dir / "daemon.log"
