"""Several server replicas on one Postgres database, real processes throughout.

Two and three `armillary server` processes share a fresh database; node daemons
connect to different replicas. What is checked: exactly one replica leads
(`GET /api/v1/servers`); a change written through one replica reaches the others
(LISTEN/NOTIFY) and a node connected to any of them; kill -9 of the leader in the
middle of a rollout → another replica leads and the rollout completes, once; a
clean stop hands the lead over; on SQLite a second server on the same file refuses
to start, naming the lock file and the pid holding it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from armillary.store import feed, listen
from armillary.store.database import Database
from tests.support import cli, postgres
from tests.support.api import apply
from tests.support.documents import ACME, agent, stack, tenant
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess, start_replicas
from tests.support.waiting import wait_for

DEADLINE_S = 60.0


def listed(server: ServerProcess) -> list[dict[str, Any]]:
    with server.client() as http:
        response = http.get("/api/v1/servers")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def leader(server: ServerProcess) -> str | None:
    """The name of the one replica `server` lists as leading (live), if exactly one does."""
    leading = [s["name"] for s in listed(server) if s["leader"] and s["state"] == "live"]
    return leading[0] if len(leading) == 1 else None


def leading_metric(server: ServerProcess) -> float:
    with server.client() as http:
        text = http.get("/metrics").text
    return next(
        float(line.split()[1]) for line in text.splitlines() if line.startswith("armillary_leader ")
    )


def running(server: ServerProcess, name: str) -> list[dict[str, Any]]:
    with server.client() as http:
        items = http.get("/api/v1/replicas", params={"tenant": name}).json()["items"]
    return [r for r in items if (r.get("report") or {}).get("state") == "running"]


def tenant_doc(server: ServerProcess, name: str) -> dict[str, Any]:
    with server.client() as http:
        doc: dict[str, Any] = http.get(f"/api/v1/tenants/{name}").json()
    return doc


def is_ready(server: ServerProcess, name: str) -> bool:
    conditions = tenant_doc(server, name).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def three_one_leading(server: ServerProcess) -> bool:
    return len(listed(server)) == 3 and leader(server) is not None


def converged(server: ServerProcess, name: str, count: int) -> bool:
    return len(running(server, name)) == count and is_ready(server, name)


@pytest.fixture
def database(postgres_server: str) -> Iterator[str]:
    yield from postgres.fresh_database(postgres_server)


def stop_all(*children: ServerProcess | NodeProcess) -> None:
    for child in children:
        child.stop()


def test_three_replicas_one_leader_apply_through_one_converge_through_the_others(
    database: str, tmp_path: Path
) -> None:
    servers = start_replicas(database, tmp_path, 3)
    nodes = [
        NodeProcess(server=servers[1], data_dir=tmp_path / "node-a", name="node-a"),
        NodeProcess(server=servers[2], data_dir=tmp_path / "node-b", name="node-b"),
    ]
    try:
        for node in nodes:
            node.start()
        for server in servers:  # every replica lists all three, one of them leading
            wait_for(
                functools.partial(three_one_leading, server),
                timeout_s=DEADLINE_S,
                what=f"{server.url} to list three replicas, one leading",
            )
        heads = {leader(s) for s in servers}
        assert len(heads) == 1
        assert sum(leading_metric(s) for s in servers) == 1  # armillary_leader
        code, out, _ = cli.invoke(servers[2], "servers", "-o", "json")
        assert code == 0
        shown = json.loads(out)
        assert [s["name"] for s in shown] == ["s1", "s2", "s3"]
        assert [s["name"] for s in shown if s["leader"]] == list(heads)
        code, out, _ = cli.invoke(servers[2], "servers")
        assert code == 0 and out.splitlines()[0].split()[:4] == [
            "NAME",
            "ADDRESS",
            "VERSION",
            "LEADER",
        ]
        with servers[0].client() as http:
            held = {n["name"]: n["server"] for n in http.get("/api/v1/nodes").json()["items"]}
        assert held == {"node-a": "s2", "node-b": "s3"}

        mark = uuid.uuid4().hex[:6]
        name = f"multi-{mark}"
        apply(
            servers[0],
            ACME,
            stack(f"st-{mark}", agent(replicas=4)),
            tenant(name, f"st-{mark}"),
        )
        for server in servers[1:]:  # read where the nodes are not necessarily
            wait_for(
                functools.partial(converged, server, name, 4),
                timeout_s=DEADLINE_S,
                what=f"4 replicas running and Ready, read from {server.url}",
            )
        on = {r["node"] for r in running(servers[2], name)}
        assert on == {"node-a", "node-b"}  # spread: both replicas' nodes got assignments
    finally:
        stop_all(*nodes, *servers)


def test_kill_9_of_the_leader_mid_rollout_another_leads_and_it_completes_once(
    database: str, tmp_path: Path
) -> None:
    servers = start_replicas(database, tmp_path, 2)
    assert leader(servers[0]) == "s1"  # the first replica leads from its start
    first, follower = servers
    node = NodeProcess(server=follower, data_dir=tmp_path / "node-a", name="node-a")
    try:
        node.start()
        mark = uuid.uuid4().hex[:6]
        name = f"roll-{mark}"
        component = agent(replicas=4, env={"VERSION": "1"})
        apply(follower, ACME, stack(f"st-{mark}", component), tenant(name, f"st-{mark}"))
        wait_for(
            lambda: len(running(follower, name)) == 4 and is_ready(follower, name),
            timeout_s=DEADLINE_S,
            what="version 1 running",
        )
        apply(follower, stack(f"st-{mark}", {**component, "env": {"VERSION": "2"}}))

        def progressing() -> bool:
            entry = tenant_doc(follower, name).get("status", {}).get("rollouts", {})
            return entry.get("agent", {}).get("state") == "progressing"

        wait_for(progressing, timeout_s=DEADLINE_S, what="the rollout to version 2 to start")
        first.kill()  # kill -9, in the middle of it

        wait_for(
            lambda: leader(follower) == "s2",
            timeout_s=DEADLINE_S,
            what="the surviving replica to lead",
        )

        def completed() -> list[dict[str, Any]] | None:
            with follower.client() as http:
                answer = http.get(f"/api/v1/tenants/{name}/rollouts").json()
            if answer["status"].get("agent", {}).get("state") != "complete":
                return None
            return list(answer["items"])

        history = wait_for(completed, timeout_s=DEADLINE_S, what="the rollout to complete")
        assert [(r["revision"], r["state"]) for r in history] == [(1, "complete"), (2, "complete")]
        wait_for(
            lambda: len(running(follower, name)) == 4 and is_ready(follower, name),
            timeout_s=DEADLINE_S,
            what="four replicas of version 2",
        )
        with follower.client() as http:
            replicas = http.get("/api/v1/replicas", params={"tenant": name}).json()["items"]
        assert sorted(r["replica"] for r in replicas) == [0, 1, 2, 3]  # none twice
        assert len({r["specHash"] for r in replicas}) == 1
    finally:
        stop_all(node, *servers)


def node_connected(server: ServerProcess) -> dict[str, Any]:
    with server.client() as http:
        items = http.get("/api/v1/nodes").json()["items"]
    return {n["name"]: (n["connected"], n["server"]) for n in items}


def test_a_clean_stop_hands_the_lead_over_and_a_restart_leaves_others_nodes_alone(
    database: str, tmp_path: Path
) -> None:
    servers = start_replicas(database, tmp_path, 2)
    node = NodeProcess(server=servers[1], data_dir=tmp_path / "node-a", name="node-a")
    try:
        node.start()
        assert leader(servers[1]) == "s1"
        servers[0].stop()
        wait_for(
            lambda: leader(servers[1]) == "s2",
            timeout_s=DEADLINE_S,
            what="the other replica to lead",
        )
        assert [s["name"] for s in listed(servers[1])] == ["s2"]  # a clean stop leaves no row
        servers[0].start()  # resets the sessions it held, none of s2's
        assert node_connected(servers[0]) == {"node-a": (True, "s2")}
        assert leader(servers[0]) == "s2"  # a replica that starts does not take the lead
    finally:
        stop_all(node, *servers)


async def test_notify_delivers_a_change_to_another_replica(database: str) -> None:
    writer = await Database.open(database)
    reader = await Database.open(database, migrate=False)
    writer.sender, reader.sender = "writer", "reader"
    listener = listen.Listener(reader)
    listening = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.ready.wait(), timeout=DEADLINE_S)
        heard = reader.feed.subscribe()
        sent = feed.Change(
            kind="Allocation", name=uuid.uuid4().hex, tenant="t", node="n", run="r", report=True
        )
        async with writer.write() as conn:
            feed.record(conn.info, sent)

        async def arrived() -> feed.Change:
            while True:
                change = await heard.get()
                if change.name == sent.name:
                    return change

        assert await asyncio.wait_for(arrived(), timeout=DEADLINE_S) == sent
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await reader.close()
        await writer.close()


def test_a_second_server_on_one_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    first = ServerProcess(home=tmp_path / "home", database_url=None)
    first.start()
    second = ServerProcess(home=tmp_path / "home", database_url=None)
    try:
        with pytest.raises(RuntimeError, match="server exited with") as refused:
            second.start()
        assert second.process is not None and second.process.returncode != 0
        message = str(refused.value)
        assert "in use by another server" in message
        assert "armillary.db.lock" in message
        assert first.process is not None and f"process {first.process.pid}" in message
        assert first.process.poll() is None  # the first goes on serving
    finally:
        stop_all(second, first)
