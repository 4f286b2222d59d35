"""What survives what: kill -9 of the node daemon and restarts of the server leave
workloads untouched; Ctrl-C on `up` leaves no process behind (`up -d` then `down` is
the README's flow, in tests/e2e/test_docs.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import up
from tests.support.api import apply, ready, replicas
from tests.support.documents import agent, stack, tenant
from tests.support.nodes import QUICKSTART, NodeProcess
from tests.support.ports import free_port
from tests.support.processes import alive, command_line, environ_pid, http_ok, processes_marked
from tests.support.servers import ServerProcess
from tests.support.traversal import open_to_tenants
from tests.support.waiting import wait_for


@pytest.fixture
def stack_up(server: ServerProcess, tmp_path: Path) -> Iterator[tuple[NodeProcess, str, str]]:
    daemon = NodeProcess(
        server=server,
        data_dir=tmp_path / "node",
        name=f"n-{uuid.uuid4().hex[:6]}",
        stop_workloads_on_exit=False,
    )
    daemon.start()
    mark = uuid.uuid4().hex[:8]
    name = f"res-{mark}"
    apply(
        server,
        {"apiVersion": "armillary.dev/v1", "kind": "Org", "metadata": {"name": "acme"}, "spec": {}},
        stack(f"s-{mark}", agent(replicas=2)),
        tenant(name, f"s-{mark}", mark),
    )
    wait_for(lambda: ready(server, name), timeout_s=60, what="tenant Ready")
    try:
        yield daemon, name, mark
    finally:
        with server.client() as http:
            http.delete(f"/api/v1/tenants/{name}")
        if daemon.process is None or daemon.process.poll() is not None:
            daemon.start()
        wait_for(lambda: not processes_marked(mark), timeout_s=30, what="cleanup")
        daemon.stop()


def _pids(server: ServerProcess, name: str) -> dict[str, int]:
    return {r["id"]: r["report"]["pid"] for r in replicas(server, name)}


def test_kill_9_of_the_daemon_keeps_every_workload_and_the_new_daemon_adopts_it(
    server: ServerProcess, stack_up: tuple[NodeProcess, str, str]
) -> None:
    daemon, name, mark = stack_up
    before = _pids(server, name)
    log = daemon.data_dir / "replicas" / next(iter(before)) / "output.log"
    size_before = log.stat().st_size

    daemon.kill()
    assert all(alive(pid) for pid in before.values())
    port = replicas(server, name)[0]["ports"]["http"]
    assert http_ok(port, "/while-the-daemon-is-down")  # still serving, and logging:
    wait_for(lambda: log.stat().st_size > size_before, what="the replica to keep logging")

    daemon.start()

    def adopted() -> bool:
        items = replicas(server, name)
        return all(
            r["report"]["pid"] == before[r["id"]] and r["report"]["state"] == "running"
            for r in items
        )

    wait_for(adopted, timeout_s=30, what="the same pids reported again")
    assert {r["report"]["restarts"] for r in replicas(server, name)} == {0}
    assert ready(server, name)
    assert len(processes_marked(mark)) == 2
    assert "/while-the-daemon-is-down" in log.read_text()


def test_a_server_restart_restarts_no_workload(
    server: ServerProcess, stack_up: tuple[NodeProcess, str, str]
) -> None:
    daemon, name, mark = stack_up
    before = _pids(server, name)
    server.kill()
    assert all(alive(pid) for pid in before.values())
    server.start()
    wait_for(daemon.connected, timeout_s=30, what="the node to reconnect")
    assert daemon.process is not None and daemon.process.poll() is None, daemon.log()[-2000:]
    wait_for(lambda: ready(server, name), timeout_s=30, what="Ready after the restart")
    assert _pids(server, name) == before
    assert {r["report"]["restarts"] for r in replicas(server, name)} == {0}
    assert len(processes_marked(mark)) == 2
    # The reconnected node acts on new work: scale up and see the third replica run.
    apply(
        server,
        stack(f"s-{mark}", agent(replicas=2)),
        tenant(name, f"s-{mark}", mark, overrides={"agent": {"replicas": 3}}),
    )
    wait_for(
        lambda: len(processes_marked(mark)) == 3 and ready(server, name),
        timeout_s=30,
        what="the scaled-up replica",
    )
    assert set(before.values()) <= {r["report"]["pid"] for r in replicas(server, name)}


def test_ctrl_c_on_up_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / ".armillary"
    open_to_tenants(tmp_path)  # the node's data dir is in it
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "armillary", "up", str(QUICKSTART), "--port", str(port)],
        cwd=tmp_path,
        env=up.env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        assert any("acme-support" in line for line in lines), "".join(lines)
        state = json.loads((home / "up.json").read_text())
        token = json.loads((home / "context.json").read_text())["token"]
        assert token not in command_line(state["node"])  # ps shows every user the argv
        assert environ_pid(state["node"])["ARMILLARY_NODE_TOKEN"] == token
        wait_for(lambda: len(up.processes_under(home)) == 7, what="7 replicas")
        process.send_signal(signal.SIGINT)
        rest = process.stdout.read()  # to the end: `up` prints as it stops
        assert process.wait(timeout=120) == 0, "".join(lines) + rest
        assert "Stopped." in rest
        assert up.processes_under(home) == []
        assert not alive(state["server"]) and not alive(state["node"])
    finally:
        process.stdout.close()
        up.clean_up(process, home)
