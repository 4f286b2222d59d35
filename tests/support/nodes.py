"""A real `armillary node` daemon process for integration tests.

`NodeProcess` starts one and waits until the server lists it as connected; the
`node` fixture in tests/integration/conftest.py gives each module one. The key goes
in a file (`--token-file`), never on the command line; `token` picks another key
than the server's admin token, `takeover` asks to replace a live daemon of the name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
    # --tenant-uids. "off" unless a test is about per-tenant users (test_isolation.py):
    # run as root, a daemon would otherwise run each tenant as a user of its own, and a
    # test's replicas would need every directory above their files (the checkout, the
    # temporary directories of pytest, which every pytest session closes again) open to
    # those users. None: the daemon's own default.
    tenant_uids: str | None = "off"
    token: str | None = None  # the key to connect with; the server's admin token if None
    token_by: Literal["file", "env"] = "file"  # --token-file, or ARMILLARY_NODE_TOKEN
    takeover: bool = False
    extra_args: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.launch()
        wait_for(self.connected, timeout_s=30, what=f"node {self.name} to connect")

    def launch(self) -> None:
        """Start the daemon process without waiting for it to connect."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.tenant_uids != "off":  # tenant users must pass the directories above it
            open_to_tenants(self.data_dir)
        token = self.token or self.server.token
        token_file = self.data_dir / "node.token"
        descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as sink:
            sink.write(token + "\n")
        # Never on the command line: every user can read it, the replicas' users included.
        by_file = ["--token-file", str(token_file)] if self.token_by == "file" else []
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ARMILLARY_TOKEN", "ARMILLARY_NODE_TOKEN")
        }
        if self.token_by == "env":
            env["ARMILLARY_NODE_TOKEN"] = token
        args = [
            sys.executable,
            "-m",
            "armillary",
            "node",
            "--server",
            self.server.url,
            *by_file,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
        ]
        if self.stop_workloads_on_exit:
            args.append("--stop-workloads-on-exit")
        if self.tenant_uids is not None:
            args += ["--tenant-uids", self.tenant_uids]
        if self.takeover:
            args.append("--takeover")
        args.extend(self.extra_args)
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
