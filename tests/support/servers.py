"""A real `armillary server` process for integration tests.

Started with `python -m armillary server` on a loopback socket this process binds and
hands down (`--fd`, see ports.py), its state in a temporary ARMILLARY_HOME, on SQLite
or on a fresh Postgres database. Waits on /readyz with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import tls
from tests.support.children import Child
from tests.support.ports import bound_socket

START_DEADLINE_S = 30.0


@dataclass
class ServerProcess(Child):
    home: Path
    database_url: str | None
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)  # after `server --port … --fd …`
    # Bound now, so the port is ours from the start; handed to the child at start().
    _socket: socket.socket | None = field(default_factory=bound_socket, repr=False)

    @property
    def port(self) -> int:
        return self._port

    def __post_init__(self) -> None:
        self._port: int = int(self._socket.getsockname()[1]) if self._socket else 0

    @classmethod
    def standing_in(cls, *, home: Path, port: int) -> ServerProcess:
        """A handle on something else already listening on `port`, never started: for a
        node daemon pointed at a stand-in server the test runs itself."""
        server = cls(home=home, database_url=None, _socket=None)
        server._port = port
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        token: str = json.loads((self.home / "context.json").read_text())["token"]
        return token

    @property
    def store_url(self) -> str:
        """The URL of the server's store: its Postgres database, or the SQLite file in
        its home."""
        return self.database_url or f"sqlite:///{self.home / 'armillary.db'}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "ARMILLARY_HOME": str(self.home),
            "ARMILLARY_LOG_LEVEL": "warning",
            "ARMILLARY_NODE_HEARTBEAT_S": "0.3",
            # Tests poll with deadlines, many times a second and from several threads at
            # once; the rate limit itself is tested with its defaults in test_access.py.
            "ARMILLARY_RATE_LIMIT_PER_S": "5000",
            "ARMILLARY_RATE_LIMIT_BURST": "50000",
        }
        env.pop("ARMILLARY_DATABASE_URL", None)
        if self.database_url:
            env["ARMILLARY_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until ready.

        This process keeps its copy of the socket only until the server answers: a copy
        kept longer would keep the port listening after a kill -9, and clients would
        hang in its backlog instead of being refused as they would be by a dead server.
        A restart binds the port again (SO_REUSEADDR); it was ours a moment before."""
        self.home.mkdir(parents=True, exist_ok=True)
        sock = self._socket or bound_socket(self.port)
        self._socket = None
        try:
            self._spawn(sock)
            self._wait_ready()
        finally:
            sock.close()

    def _spawn(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        args = ["server", "--port", str(self.port), "--fd", str(fd), *self.extra_args]
        with (self.home / "server.log").open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [sys.executable, "-m", "armillary", *args],
                env=self.env(),
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
            )

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if (
                    httpx.get(f"{self.url}/readyz", timeout=1, verify=tls.CONTEXT).status_code
                    == 200
                ):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {START_DEADLINE_S}s:\n{self.log()}")

    def stop(self) -> None:
        super().stop()
        if self._socket is not None:  # never started
            self._socket.close()
            self._socket = None

    def log_path(self) -> Path:
        return self.home / "server.log"

    def client(self, *, token: str | None = "admin") -> httpx.Client:
        headers = {}
        if token == "admin":
            headers["Authorization"] = f"Bearer {self.token}"
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=tls.CONTEXT)


SECRET_KEY = "Z4j0tS9o6m3Vq2l8kR1xW7yH5cN0bP4eD6fG8hJ2kL0="  # shared by replicas of one store


def start_replicas(database_url: str, root: Path, count: int) -> list[ServerProcess]:
    """`count` servers on `database_url`, named s1…; the first mints the admin token,
    which the others' homes are given (each home's context holds the token tests use)."""
    started: list[ServerProcess] = []
    for i in range(1, count + 1):
        home = root / f"s{i}"
        home.mkdir(parents=True)
        if started:
            context = {"url": "", "token": started[0].token}
            (home / "context.json").write_text(json.dumps(context))
        proc = ServerProcess(
            home=home,
            database_url=database_url,
            extra_env={"ARMILLARY_SECRET_KEY": SECRET_KEY, "ARMILLARY_SERVER_NAME": f"s{i}"},
        )
        proc.start()
        started.append(proc)
    return started
