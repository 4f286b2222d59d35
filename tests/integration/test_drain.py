"""Draining a node, SQLite and Postgres: the state in the store, the loop that says
Drained and enforces the deadline, and a real drain across two node daemons.

The drain of four health-checked replicas is watched by a thread reading the API
every ~50 ms: at no sample may fewer replicas be running (healthy) than the rollout
budget allows (replicas 4, max_unavailable 2: two). Without the drain nothing moves
and the node never says Drained; without the budget in the step, all four would be
stopped at once.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from armillary.control.drains import Drains
from armillary.errors import NotFound
from armillary.store import allocations, nodes
from armillary.store.database import Database
from tests.support.api import apply, delete, replicas
from tests.support.cli import invoke
from tests.support.documents import ACME, agent, stack, tenant
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
A, B = "drain-a", "drain-b"


# --- the store and the loop, no processes ----------------------------------------------


async def _register(db: Database, name: str) -> None:
    async with db.write() as conn:
        capacity = {"cpu_millicores": 1000, "memory_mb": 1024}
        await nodes.register(
            conn, name=name, address="127.0.0.1", labels={}, capacity=capacity, now=NOW
        )


def _allocation(node: str, *, job: bool, state: str | None) -> allocations.Allocation:
    return allocations.Allocation(
        id=str(uuid.uuid4()),
        tenant="t",
        component="seed" if job else "web",
        replica=0,
        node=node,
        spec_hash="h",
        spec={"type": "job" if job else "service", "command": ["sleep", "1"]},
        report={"state": state} if state else None,
        created_at=NOW,
        reported_at=None,
    )


async def test_a_drain_is_kept_in_the_store_and_uncordon_ends_it(store: Database) -> None:
    await _register(store, "n1")
    deadline = NOW + dt.timedelta(minutes=5)
    async with store.write() as conn:
        started = await nodes.drain(conn, "n1", deadline_at=deadline, now=NOW)
    assert (started.drain, started.schedulable) == ("draining", False)
    assert (started.drain_started_at, started.drain_deadline_at) == (NOW, deadline)
    async with store.write() as conn:  # again: a new deadline, the same start
        again = await nodes.drain(conn, "n1", deadline_at=None, now=NOW + dt.timedelta(hours=1))
        assert [n.name for n in await nodes.draining(conn)] == ["n1"]
        assert [t.draining for t in await nodes.targets(conn)] == [True]
    assert (again.drain_started_at, again.drain_deadline_at) == (NOW, None)
    async with store.write() as conn:
        assert await nodes.mark_drained(conn, "n1", now=NOW)
        assert not await nodes.mark_drained(conn, "n1", now=NOW)  # once
        assert await nodes.draining(conn) == []
        assert (await nodes.require(conn, "n1")).drain == "drained"
        ended = await nodes.set_schedulable(conn, "n1", schedulable=True)
    assert (ended.drain, ended.schedulable, ended.drained_at) == (None, True, None)
    async with store.write() as conn:
        with pytest.raises(NotFound, match="'nowhere'"):
            await nodes.drain(conn, "nowhere", deadline_at=None, now=NOW)


async def test_the_loop_stops_what_runs_at_the_deadline_then_says_drained(
    store: Database,
) -> None:
    """A service and a running job on the node, a finished job beside them: before the
    deadline nothing is touched; at it, the two that run are stopped; then the node is
    drained, the finished job's record kept. Each look is a new loop, as after a restart:
    what it acts on is in the store."""
    await _register(store, "n1")
    service = _allocation("n1", job=False, state="running")
    running_job = _allocation("n1", job=True, state="running")
    done_job = _allocation("n1", job=True, state="succeeded")
    async with store.write() as conn:
        await allocations.add(conn, [service, running_job, done_job])
        await nodes.drain(conn, "n1", deadline_at=NOW + dt.timedelta(seconds=60), now=NOW)

    def loop(at: dt.datetime) -> Drains:
        return Drains(store, interval_s=30.0, clock=lambda: at)

    assert await loop(NOW + dt.timedelta(seconds=50)).check() == pytest.approx(10.0)
    async with store.read() as conn:
        assert len(await allocations.for_node(conn, "n1")) == 3
        assert (await nodes.require(conn, "n1")).drain == "draining"

    await loop(NOW + dt.timedelta(seconds=61)).check()
    await loop(NOW + dt.timedelta(seconds=62)).check()
    async with store.read() as conn:
        assert [a.id for a in await allocations.for_node(conn, "n1")] == [done_job.id]
        node = await nodes.require(conn, "n1")
    assert node.drain == "drained"
    assert node.drained_at == NOW + dt.timedelta(seconds=62)


# --- a real drain across two node daemons -------------------------------------------


@pytest.fixture(scope="module")
def daemons(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[NodeProcess]]:
    started = [
        NodeProcess(server=server, data_dir=tmp_path_factory.mktemp(n), name=n) for n in (A, B)
    ]
    try:
        for daemon in started:
            daemon.launch()
        for daemon in started:
            wait_for(daemon.connected, timeout_s=30, what=f"node {daemon.name} to connect")
        apply(server, ACME)
        yield started
    finally:
        for daemon in started:
            daemon.stop()


def _node(server: ServerProcess, name: str) -> dict[str, Any]:
    with server.client() as http:
        items = http.get("/api/v1/nodes").json()["items"]
    return next(n for n in items if n["name"] == name)


def _post(server: ServerProcess, path: str, body: dict[str, Any] | None = None) -> None:
    with server.client() as http:
        response = http.post(path, json=body) if body is not None else http.post(path)
    assert response.status_code == 200, response.text


def _running(server: ServerProcess, tenant_name: str, component: str) -> list[str]:
    """The nodes of `component`'s replicas that run (and pass their health check)."""
    return sorted(
        r["node"]
        for r in replicas(server, tenant_name, component)
        if (r["report"] or {}).get("state") == "running"
    )


@pytest.fixture
def on_a(server: ServerProcess, daemons: list[NodeProcess]) -> Iterator[None]:
    """Whatever the test applies lands on drain-a (drain-b is cordoned until the test
    uncordons it); both nodes schedulable again afterwards."""
    _post(server, f"/api/v1/nodes/{B}/cordon")
    try:
        yield
    finally:
        for name in (A, B):
            _post(server, f"/api/v1/nodes/{name}/uncordon")


class Watcher(threading.Thread):
    """Reads the tenant's replicas every ~50 ms and keeps how many ran at each sample."""

    def __init__(self, server: ServerProcess, tenant_name: str) -> None:
        super().__init__(daemon=True)
        self.server, self.tenant_name = server, tenant_name
        self.samples: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        with self.server.client() as http:
            while not self.done.is_set():
                got = http.get("/api/v1/replicas", params={"tenant": self.tenant_name})
                items = got.json()["items"]
                running = [r for r in items if (r["report"] or {}).get("state") == "running"]
                self.samples.append(len(running))
                self.done.wait(0.05)


def test_a_drain_moves_four_replicas_within_the_budget_and_the_node_ends_drained(
    server: ServerProcess, daemons: list[NodeProcess], on_a: None
) -> None:
    name = "drained"
    web = agent("web", replicas=4, rollout={"max_surge": 1, "max_unavailable": 2})
    apply(server, stack(name, web), tenant(name, name))
    wait_for(lambda: _running(server, name, "web") == [A] * 4, timeout_s=60, what="4 on drain-a")
    _post(server, f"/api/v1/nodes/{B}/uncordon")

    watcher = Watcher(server, name)
    watcher.start()
    try:
        code, said, progress = invoke(server, "nodes", "drain", A, "--deadline", "10m")
    finally:
        watcher.done.set()
        watcher.join(timeout=10)
    assert code == 0, progress
    assert said.strip() == f"node/{A} drained"
    assert f"node/{A}: draining: " in progress and "waiting for health" in progress
    assert len(watcher.samples) >= 5
    assert min(watcher.samples) >= 2, watcher.samples  # never below the budget

    wait_for(lambda: _running(server, name, "web") == [B] * 4, timeout_s=60, what="4 on drain-b")
    drained = _node(server, A)
    assert (drained["replicas"], drained["schedulable"]) == (0, False)
    assert drained["drain"]["state"] == "drained" and drained["drain"]["drainedAt"]
    code, listing, _ = invoke(server, "nodes")
    assert code == 0 and f"{A}" in listing and "Ready,Drained" in listing
    code, report, _ = invoke(server, "doctor", "-o", "json")
    check = next(c for c in json.loads(report)["checks"] if c["name"] == f"node/{A}")
    assert check["status"] == "warn" and "drained: empty" in check["finding"]
    with server.client() as http:
        metrics = http.get("/metrics").text
    assert 'armillary_nodes{state="drained"} 1.0' in metrics

    code, said, _ = invoke(server, "nodes", "uncordon", A)
    assert code == 0 and said.strip() == f"node/{A} uncordoned"
    ended = _node(server, A)
    assert (ended["schedulable"], ended["drain"]) == (True, None)
    code, listing, _ = invoke(server, "nodes")
    row = next(line for line in listing.splitlines() if line.startswith(A))
    assert row.split()[1] == "Ready"
    delete(server, "tenants", name)
    wait_for(lambda: not replicas(server, name), timeout_s=30, what="the tenant's replicas gone")


def test_a_job_is_left_to_finish_until_the_deadline_then_runs_elsewhere(
    server: ServerProcess, daemons: list[NodeProcess], on_a: None
) -> None:
    """A long job and a service on drain-a. Drained without a deadline, the service
    moves and the job stays (the node keeps Draining); a drain again with a deadline of
    0 stops the job, which is placed again on drain-b, and the node is Drained."""
    name = "jobs"
    job = {"name": "long", "type": "job", "command": ["sleep", "600"], "stop_grace_s": 1}
    apply(server, stack(name, agent("web"), job), tenant(name, name))
    wait_for(lambda: _running(server, name, "long") == [A], timeout_s=60, what="the job on a")
    wait_for(lambda: _running(server, name, "web") == [A], timeout_s=60, what="web on a")
    _post(server, f"/api/v1/nodes/{B}/uncordon")

    code, said, _ = invoke(server, "nodes", "drain", A, "--no-deadline", "--no-wait")
    assert code == 0 and said.strip() == f"node/{A} draining"
    wait_for(lambda: [r["node"] for r in replicas(server, name, "web")] == [B], timeout_s=60)
    assert _running(server, name, "long") == [A]  # left to finish
    assert _node(server, A)["drain"]["state"] == "draining"

    _post(server, f"/api/v1/nodes/{A}/drain", {"deadline_s": 0})
    wait_for(lambda: _node(server, A)["drain"]["state"] == "drained", timeout_s=60)
    wait_for(lambda: _running(server, name, "long") == [B], timeout_s=60, what="the job on b")
    delete(server, "tenants", name)
    wait_for(lambda: not replicas(server, name), timeout_s=30, what="the tenant's replicas gone")


def test_bad_drains_say_what_is_wrong_and_change_nothing(
    server: ServerProcess, daemons: list[NodeProcess]
) -> None:
    with server.client() as http:
        missing = http.post("/api/v1/nodes/nowhere/drain", json={"deadline_s": 10})
        negative = http.post(f"/api/v1/nodes/{A}/drain", json={"deadline_s": -1})
        text = http.post(f"/api/v1/nodes/{A}/drain", json={"deadline_s": "10m"})
    assert missing.status_code == 404 and "'nowhere'" in missing.text
    assert negative.status_code == 422 and "deadline_s" in negative.text
    assert text.status_code == 422 and "deadline_s" in text.text

    code, _, said = invoke(server, "nodes", "drain", "nowhere")
    assert code != 0 and "'nowhere'" in said
    code, _, said = invoke(server, "nodes", "drain", A, "--deadline", "soon")
    assert code != 0 and "--deadline" in said and "'soon'" in said
    assert (_node(server, A)["schedulable"], _node(server, A)["drain"]) == (True, None)


def test_a_drain_carries_on_after_the_server_restarts(
    server: ServerProcess, daemons: list[NodeProcess], on_a: None
) -> None:
    """Two replicas on drain-a, drain-b cordoned: the drain can move nothing yet. The
    server restarts; once drain-b is uncordoned the drain, read back from the store,
    moves both and ends Drained. (Last in the module: it restarts the shared server.)"""
    name = "restarted"
    apply(server, stack(name, agent("web", replicas=2)), tenant(name, name))
    wait_for(lambda: _running(server, name, "web") == [A] * 2, timeout_s=60, what="2 on drain-a")
    _post(server, f"/api/v1/nodes/{A}/drain", {"deadline_s": 3600})
    assert _node(server, A)["drain"]["state"] == "draining"

    server.stop()
    server.start()
    for daemon in daemons:
        wait_for(daemon.connected, timeout_s=60, what=f"node {daemon.name} to connect again")
    assert _node(server, A)["drain"]["state"] == "draining"
    _post(server, f"/api/v1/nodes/{B}/uncordon")
    wait_for(lambda: _node(server, A)["drain"]["state"] == "drained", timeout_s=60)
    assert _running(server, name, "web") == [B] * 2
    delete(server, "tenants", name)
    wait_for(lambda: not replicas(server, name), timeout_s=30, what="the tenant's replicas gone")
