"""After the first full set, a node session carries only what changed, both ways.

A probe node (a raw protocol client of the test's own, against a real server) gets
its whole set once, then `assignments.delta` messages naming only the allocations
added or removed; its reports name only the replicas whose state changed, and the
server keeps what it was told of the others. A new session starts over from a full
set. This is what keeps a change's cost flat as a node fills up. Heartbeats of
many nodes are stored together, each node's own.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from websockets.sync.client import connect
from websockets.sync.connection import Connection

from armillary import protocol
from armillary.node.daemon import websocket_url
from tests.support import api
from tests.support.documents import ACME, stack, tenant
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

SLEEPER = {"name": "app", "command": ["sleep", "1000"], "replicas": 2}


def _say_hello(ws: Connection, token: str, node: str, **extra: Any) -> None:
    hello = protocol.Hello(
        node=node,
        token=token,
        address="127.0.0.1",
        capacity=protocol.Capacity(cpu_millicores=64_000, memory_mb=256_000),
        labels={"probe": node},
        **extra,
    )
    ws.send(json.dumps({"type": "hello", "seq": 1, "payload": protocol.encode(hello)}))
    assert json.loads(ws.recv(timeout=10))["type"] == "welcome"


def _next(ws: Connection) -> dict[str, Any]:
    """The next assignments message (of either kind)."""
    while True:
        envelope: dict[str, Any] = json.loads(ws.recv(timeout=15))
        if envelope["type"].startswith("assignments"):
            return envelope


def _running(ws: Connection, ids: list[str]) -> None:
    reports = [protocol.encode(protocol.ReplicaReport(id=i, state="running")) for i in ids]
    ws.send(json.dumps({"type": "report", "seq": 2, "payload": {"replicas": reports}}))


def _states(server: ServerProcess, name: str) -> dict[str, str | None]:
    return {r["id"]: (r.get("report") or {}).get("state") for r in api.replicas(server, name)}


def test_a_session_sends_the_whole_set_once_then_only_what_changed(
    server: ServerProcess,
) -> None:
    # The probe is the only node of this module's server: it gets every replica.
    mark = uuid.uuid4().hex[:8]
    node = f"probe-{mark}"
    first, second = f"d1-{mark}", f"d2-{mark}"
    api.apply(server, ACME, stack(f"s-{mark}", SLEEPER))
    with connect(websocket_url(server.url), open_timeout=10) as ws:
        _say_hello(ws, server.token, node)
        opening = _next(ws)
        assert opening["type"] == "assignments"
        assert opening["payload"]["allocations"] == []

        api.apply(server, tenant(first, f"s-{mark}"))
        added = _next(ws)
        assert added["type"] == "assignments.delta"
        assert added["payload"]["remove"] == []
        ids_first = sorted(spec["id"] for spec in added["payload"]["add"])
        assert {spec["tenant"] for spec in added["payload"]["add"]} == {first}
        assert len(ids_first) == 2
        assert added["payload"]["epoch"] > opening["payload"]["epoch"]

        api.apply(server, tenant(second, f"s-{mark}"))
        more = _next(ws)
        assert more["type"] == "assignments.delta"
        # the second tenant's replicas only: nothing already sent is sent again
        assert {spec["tenant"] for spec in more["payload"]["add"]} == {second}
        ids_second = sorted(spec["id"] for spec in more["payload"]["add"])
        assert len(ids_second) == 2

        # A report of some replicas leaves what the server knows of the others alone.
        _running(ws, ids_first)
        wait_for(lambda: set(_states(server, first).values()) == {"running"}, timeout_s=15)
        _running(ws, ids_second[:1])
        wait_for(lambda: _states(server, second)[ids_second[0]] == "running", timeout_s=15)
        assert _states(server, first) == dict.fromkeys(ids_first, "running")
        assert _states(server, second)[ids_second[1]] is None

        api.delete(server, "tenants", first)
        removed = _next(ws)
        assert removed["type"] == "assignments.delta"
        assert removed["payload"] == {
            "epoch": removed["payload"]["epoch"],
            "add": [],
            "remove": ids_first,
        }

    # A new session starts from the whole set again.
    with connect(websocket_url(server.url), open_timeout=10) as ws:
        _say_hello(ws, server.token, node)
        again = _next(ws)
        assert again["type"] == "assignments"
        assert sorted(spec["id"] for spec in again["payload"]["allocations"]) == ids_second


def test_the_heartbeats_of_many_nodes_are_each_stored(server: ServerProcess) -> None:
    mark = uuid.uuid4().hex[:8]
    names = [f"beat-{mark}-{i}" for i in range(12)]
    sockets = [connect(websocket_url(server.url), open_timeout=10) for _ in names]
    try:
        for i, (ws, name) in enumerate(zip(sockets, names, strict=True)):
            _say_hello(ws, server.token, name)
            usage = protocol.Usage(
                cpu_percent=float(i),
                memory_used_mb=100 + i,
                memory_total_mb=1000,
                disk_used_percent=1.0,
            )
            beat = {"type": "heartbeat", "seq": 2, "payload": {"usage": protocol.encode(usage)}}
            ws.send(json.dumps(beat))

        def stored() -> dict[str, Any]:
            with server.client() as http:
                items = http.get("/api/v1/nodes").json()["items"]
            return {n["name"]: n.get("usage", {}).get("memoryUsedMb") for n in items}

        wait_for(lambda: all(stored().get(n) == 100 + i for i, n in enumerate(names)), timeout_s=15)
    finally:
        for ws in sockets:
            ws.close()
