"""Node loss with real daemons: a machine that stops (its daemon and its replicas
SIGSTOPped: the socket stays open, nothing is said) is declared Lost by heartbeat
age, and its replicas run on the survivor; when it resumes, the stale copies stop
and are never counted; `on_node_lost: wait` keeps a replica where it was and says
so; a daemon killed and restarted within the window is no loss at all.

The module's server declares a node lost after 3 s of silence (heartbeats every
0.3 s); the restart test has a server of its own with a 20 s window, so a slow
restart on a busy machine stays inside it. Without the node-loss controller the
replicas never leave the stopped node; without fencing the stale copies keep
running (or their reports count them twice).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support import postgres
from tests.support.api import apply, delete, replicas
from tests.support.cli import invoke
from tests.support.documents import ACME, stack, tenant
from tests.support.nodes import NodeProcess
from tests.support.processes import alive, processes_marked
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

SERVER_ENV = {"ARMILLARY_NODE_LOST_AFTER_S": "3", "ARMILLARY_NODE_HEARTBEAT_S": "0.3"}
A, B = "loss-a", "loss-b"


@pytest.fixture(scope="module")
def pair(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, NodeProcess]]:
    daemons = {
        n: NodeProcess(server=server, data_dir=tmp_path_factory.mktemp(n), name=n) for n in (A, B)
    }
    try:
        for daemon in daemons.values():
            daemon.launch()
        for daemon in daemons.values():
            wait_for(daemon.connected, timeout_s=30, what=f"node {daemon.name} to connect")
        apply(server, ACME)
        yield daemons
    finally:
        for daemon in daemons.values():
            daemon.stop()


def sleeper(**extra: Any) -> dict[str, Any]:
    return {"name": "web", "command": ["sleep", "600"], "stop_grace_s": 1, **extra}


def node(server: ServerProcess, name: str) -> dict[str, Any]:
    with server.client() as http:
        items: list[dict[str, Any]] = http.get("/api/v1/nodes").json()["items"]
    return next(n for n in items if n["name"] == name)


def audited(server: ServerProcess, verb: str, name: str) -> list[dict[str, Any]]:
    with server.client() as http:
        answer = http.get("/api/v1/audit", params={"verb": verb, "kind": "Node", "name": name})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def running_on(
    server: ServerProcess, name: str, count: int, where: str
) -> list[dict[str, Any]] | None:
    """Tenant `name`'s replicas once exactly `count` run, all on node `where`."""
    items = replicas(server, name)
    if len(items) != count:
        return None
    if any(r["node"] != where or (r["report"] or {}).get("state") != "running" for r in items):
        return None
    return items


def component(server: ServerProcess, name: str) -> dict[str, Any]:
    with server.client() as http:
        status = http.get(f"/api/v1/tenants/{name}").json().get("status", {})
    found: dict[str, Any] = status.get("components", {}).get("web", {})
    return found


@pytest.fixture
def on_a(
    server: ServerProcess, pair: dict[str, NodeProcess], request: pytest.FixtureRequest
) -> Iterator[tuple[str, str]]:
    """A tenant whose replicas (the test's `web` component) all run on node A: B is
    cordoned while they are placed. Removed at the end, its processes gone."""
    spec: dict[str, Any] = request.param
    mark = uuid.uuid4().hex[:8]
    name = f"loss-{mark}"
    invoke(server, "nodes", "cordon", B)
    try:
        apply(server, stack(f"s-{mark}", sleeper(**spec)), tenant(name, f"s-{mark}", mark))
        wait_for(
            lambda: running_on(server, name, spec.get("replicas", 1), A),
            timeout_s=60,
            what=f"{name}'s replicas to run on {A}",
        )
    finally:
        invoke(server, "nodes", "uncordon", B)
    try:
        yield name, mark
    finally:
        delete(server, "tenants", name)
        wait_for(
            lambda: not processes_marked(mark), timeout_s=60, what="the tenant's processes to end"
        )


def machine(daemon: NodeProcess, mark: str) -> list[psutil.Process]:
    """The daemon and every process of its machine the test tenant has: its children
    (the replicas it started) and the processes carrying the tenant's mark."""
    assert daemon.process is not None
    root = psutil.Process(daemon.process.pid)
    found = {p.pid: p for p in [root, *root.children(recursive=True), *processes_marked(mark)]}
    return list(found.values())


def send(processes: list[psutil.Process], sig: signal.Signals) -> None:
    for process in processes:
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            continue


@pytest.mark.parametrize("comes_back", ["resumes", "restarts"])
@pytest.mark.parametrize("on_a", [{"replicas": 2}], indirect=True)
def test_a_stopped_machine_s_replicas_run_on_the_survivor_and_its_stale_copies_stop(
    server: ServerProcess, pair: dict[str, NodeProcess], on_a: tuple[str, str], comes_back: str
) -> None:
    """`resumes`: SIGCONT, the daemon goes on on its old socket, which stayed open;
    `restarts`: its daemon is killed while stopped and a new one starts, adopting the
    stale copies from its state file and reporting them in its hello."""
    name, mark = on_a
    stale = {r["id"]: r["report"]["pid"] for r in replicas(server, name)}
    losses, finds = len(audited(server, "lost", A)), len(audited(server, "found", A))
    stopped = machine(pair[A], mark)
    assert set(stale.values()) <= {p.pid for p in stopped}
    send(stopped, signal.SIGSTOP)
    try:
        moved = wait_for(
            lambda: running_on(server, name, 2, B),
            timeout_s=60,
            what=f"{name}'s replicas to run on {B}",
        )
        assert not set(stale) & {r["id"] for r in moved}
        lost = node(server, A)
        assert lost["status"] == "Lost" and lost["lostAt"] is not None
        assert node(server, B)["status"] == "Ready"
        code, out, _ = invoke(server, "nodes")
        assert code == 0
        assert any(line.split()[:2] == [A, "Lost"] for line in out.splitlines()), out
        assert len(audited(server, "lost", A)) == losses + 1
        if comes_back == "restarts":
            pair[A].kill()  # a stopped process takes SIGKILL
    finally:
        send(stopped, signal.SIGCONT)
    if comes_back == "restarts":
        pair[A].start()

    # The stale copies stop, nothing the node says of them is recorded, and it is
    # Ready again.
    wait_for(
        lambda: not any(alive(pid) for pid in stale.values()),
        timeout_s=60,
        what="the stale copies on the returning node to stop",
    )
    wait_for(lambda: node(server, A)["status"] == "Ready", timeout_s=30, what=f"{A} Ready")
    assert node(server, A)["lostAt"] is None
    assert len(audited(server, "found", A)) == finds + 1
    wait_for(lambda: component(server, name).get("ready") == 2, timeout_s=30, what="2 ready")
    seen = component(server, name)
    assert (seen["desired"], seen["ready"], seen["updated"]) == (2, 2, 2), seen
    assert running_on(server, name, 2, B) is not None
    assert len(processes_marked(mark)) == 2


@pytest.mark.parametrize("on_a", [{"replicas": 1}], indirect=True)
def test_a_lost_node_s_replica_no_other_node_takes_stays_and_is_adopted_on_return(
    server: ServerProcess, pair: dict[str, NodeProcess], on_a: tuple[str, str]
) -> None:
    """With B cordoned nothing can take the successor: the old allocation is kept
    (the only copy there may be), the status says why, and the node that comes back
    goes on running it, same allocation, same process."""
    name, mark = on_a
    [before] = replicas(server, name)
    invoke(server, "nodes", "cordon", B)
    stopped = machine(pair[A], mark)
    send(stopped, signal.SIGSTOP)
    try:
        wait_for(
            lambda: "1 node(s) lost" in str(component(server, name).get("unplaced")),
            timeout_s=60,
            what="the tenant's status to say no node takes the replica",
        )
        assert node(server, A)["status"] == "Lost"
        assert [r["id"] for r in replicas(server, name)] == [before["id"]]
    finally:
        send(stopped, signal.SIGCONT)
        invoke(server, "nodes", "uncordon", B)
    wait_for(lambda: component(server, name).get("ready") == 1, timeout_s=30, what="Ready again")
    [after] = replicas(server, name)
    assert (after["id"], after["report"]["pid"]) == (before["id"], before["report"]["pid"])
    assert node(server, A)["status"] == "Ready"


@pytest.mark.parametrize("on_a", [{"replicas": 1, "on_node_lost": "wait"}], indirect=True)
def test_on_node_lost_wait_keeps_the_replica_where_it_was_and_says_so(
    server: ServerProcess, pair: dict[str, NodeProcess], on_a: tuple[str, str]
) -> None:
    name, mark = on_a
    [before] = replicas(server, name)
    stopped = machine(pair[A], mark)
    send(stopped, signal.SIGSTOP)
    try:
        expected = f"waits for node {A} (lost)"
        wait_for(
            lambda: any(expected in p for p in component(server, name).get("problems", [])),
            timeout_s=60,
            what=f"the tenant's status to say it {expected}",
        )
        assert node(server, A)["status"] == "Lost"
        with server.client() as http:
            conditions = http.get(f"/api/v1/tenants/{name}").json()["status"]["conditions"]
        ready = next(c for c in conditions if c["type"] == "Ready")
        assert ready["status"] == "False" and expected in ready["message"], ready
        assert [r["id"] for r in replicas(server, name)] == [before["id"]]
        assert [p.pid for p in processes_marked(mark)] == [before["report"]["pid"]]
    finally:
        send(stopped, signal.SIGCONT)
    wait_for(lambda: component(server, name).get("ready") == 1, timeout_s=30, what="Ready again")
    [after] = replicas(server, name)
    assert (after["id"], after["report"]["pid"]) == (before["id"], before["report"]["pid"])
    assert node(server, A)["status"] == "Ready"


@pytest.fixture
def patient_server(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    """A server of the test's own whose window (20 s) a daemon restart fits in."""
    urls = (
        postgres.fresh_database(request.getfixturevalue("postgres_server"))
        if backend == "postgres"
        else iter([None])
    )
    database_url = next(urls)
    proc = ServerProcess(
        home=tmp_path / "home",
        database_url=database_url,
        extra_env={"ARMILLARY_NODE_LOST_AFTER_S": "20", "ARMILLARY_NODE_HEARTBEAT_S": "0.3"},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        for _ in urls:  # the database is dropped once its generator ends
            pass


def test_kill_9_and_restart_within_the_window_is_no_loss(
    patient_server: ServerProcess, tmp_path: Path
) -> None:
    server = patient_server
    daemon = NodeProcess(
        server=server, data_dir=tmp_path / "node", name="restarts", stop_workloads_on_exit=True
    )
    daemon.start()
    mark = uuid.uuid4().hex[:8]
    name = f"restart-{mark}"
    try:
        apply(
            server, ACME, stack(f"s-{mark}", sleeper(replicas=2)), tenant(name, f"s-{mark}", mark)
        )
        before = {
            r["id"]: r["report"]["pid"]
            for r in wait_for(
                lambda: running_on(server, name, 2, "restarts"), timeout_s=60, what="2 replicas"
            )
        }
        daemon.kill()
        killed_at = dt.datetime.now(dt.UTC)
        daemon.launch()

        def back() -> bool:
            """The new daemon's session: a heartbeat stamped after the kill, Ready."""
            seen = node(server, "restarts")
            beat = seen.get("heartbeatAt")
            return (
                beat is not None
                and dt.datetime.fromisoformat(beat) > killed_at
                and seen["status"] == "Ready"
            )

        wait_for(back, timeout_s=30, what="the restarted daemon's heartbeats")

        def adopted() -> bool:
            items = replicas(server, name)
            return {r["id"]: (r["report"] or {}).get("pid") for r in items} == before and all(
                r["report"]["state"] == "running" for r in items
            )

        wait_for(adopted, timeout_s=30, what="the same replicas, same pids, reported again")
        assert {r["report"]["restarts"] for r in replicas(server, name)} == {0}
        assert node(server, "restarts")["status"] == "Ready"
        assert audited(server, "lost", "restarts") == []
        assert sorted(p.pid for p in processes_marked(mark)) == sorted(before.values())
    finally:
        delete(server, "tenants", name)
        wait_for(lambda: not processes_marked(mark), timeout_s=60, what="cleanup")
        daemon.stop()
