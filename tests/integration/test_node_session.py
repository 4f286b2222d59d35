"""How a node session ends, with real servers and real node daemons.

A stream message off the protocol closes the session with 4400, naming the field.
A store that fails while it records a node's `hello` closes the session with the
retryable 4503: the daemon stays up, backs off and connects once the store works
again. Against a WebSocket server of the test's own, a daemon reconnects after
each retryable close and exits with 1, saying why, at the first fatal one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from armillary import protocol
from armillary.node import statefile
from armillary.node.daemon import websocket_url
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

STORE_HICCUP = "the store refuses node rows (test)"


def _hello(token: str, node: str) -> str:
    hello = protocol.Hello(
        node=node,
        token=token,
        address="127.0.0.1",
        capacity=protocol.Capacity(cpu_millicores=1000, memory_mb=512),
    )
    return json.dumps({"type": "hello", "seq": 1, "payload": protocol.encode(hello)})


def test_a_stream_message_off_the_protocol_closes_the_session_naming_the_field(
    server: ServerProcess,
) -> None:
    with connect(websocket_url(server.url), open_timeout=10) as ws:
        ws.send(_hello(server.token, f"probe-{uuid.uuid4().hex[:8]}"))
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        bad = {"stream": "s1", "fd": "stdin", "data": ""}
        ws.send(json.dumps({"type": "exec.data", "seq": 2, "payload": bad}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # the assignments come first
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == protocol.CLOSE_INVALID
    assert "exec.data.fd: expected one of ['stdout', 'stderr']" in closed.value.rcvd.reason


def test_a_binary_hello_is_refused_for_good(server: ServerProcess) -> None:
    with connect(websocket_url(server.url), open_timeout=10) as ws:
        ws.send(_hello(server.token, "probe-binary").encode())
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == protocol.CLOSE_INVALID
    assert "expected a text frame of JSON" in closed.value.rcvd.reason


def _refuse_node_rows(server: ServerProcess, *, on: bool) -> None:
    """Make the server's store fail every write of a node row (a real store failure
    in `hello`), or stop that."""
    if server.database_url is None:
        with sqlite3.connect(server.home / "armillary.db", timeout=30) as db:
            for op in ("INSERT", "UPDATE"):
                if on:
                    db.execute(
                        f"CREATE TRIGGER refuse_{op.lower()} BEFORE {op} ON nodes "
                        f"BEGIN SELECT RAISE(ABORT, '{STORE_HICCUP}'); END"
                    )
                else:
                    db.execute(f"DROP TRIGGER refuse_{op.lower()}")
        return

    async def change() -> None:
        url = server.database_url or ""
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            if on:
                await conn.execute(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    f"RAISE EXCEPTION '{STORE_HICCUP}'; END $$ LANGUAGE plpgsql"
                )
                await conn.execute(
                    "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON nodes "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            else:
                await conn.execute("DROP TRIGGER refuse ON nodes; DROP FUNCTION refuse()")
        finally:
            await conn.close()

    asyncio.run(change())


def test_a_store_failure_during_hello_is_retried_by_the_daemon(
    server: ServerProcess, tmp_path: Path
) -> None:
    node = NodeProcess(server=server, data_dir=tmp_path / "node", name="node-hiccup")
    _refuse_node_rows(server, on=True)
    refusing = True
    try:
        node.launch()
        wait_for(
            lambda: node.log().count(f"{protocol.CLOSE_TRY_AGAIN}") >= 2,
            what="two hellos closed with the retryable code",
        )
        assert node.process is not None and node.process.poll() is None, node.log()
        assert "the server could not take the session now" in node.log()
        assert STORE_HICCUP not in node.log()  # the store's error stays in the server log
        _refuse_node_rows(server, on=False)
        refusing = False
        wait_for(node.connected, what="the node to connect once the store works")
        assert node.process.poll() is None
    finally:
        if refusing:
            _refuse_node_rows(server, on=False)
        node.stop()


@pytest.fixture
def closing_server() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """A WebSocket server that closes each session after its hello: the first two
    with the retryable code, then with 4401. Yields its URL and the hellos it saw."""
    seen: list[dict[str, Any]] = []

    def session(ws: ServerConnection) -> None:
        seen.append(json.loads(ws.recv(timeout=10)))
        if len(seen) <= 2:
            ws.close(protocol.CLOSE_TRY_AGAIN, "the store is busy")
        else:
            ws.close(protocol.CLOSE_UNAUTHORIZED, "unknown token")

    with serve(session, "127.0.0.1", 0) as ws_server:
        thread = threading.Thread(target=ws_server.serve_forever, daemon=True)
        thread.start()
        try:
            yield int(ws_server.socket.getsockname()[1]), seen
        finally:
            ws_server.shutdown()
            thread.join(timeout=10)


def test_the_daemon_reconnects_after_a_retryable_close_and_exits_at_a_fatal_one(
    closing_server: tuple[int, list[dict[str, Any]]], tmp_path: Path
) -> None:
    port, seen = closing_server
    # No Armillary server here: the daemon only needs a URL and a token to say hello.
    stand_in = ServerProcess.standing_in(home=tmp_path / "home", port=port)
    stand_in.home.mkdir()
    (stand_in.home / "context.json").write_text(json.dumps({"token": "arm_test_token"}))
    node = NodeProcess(server=stand_in, data_dir=tmp_path / "node", name="node-closing")
    node.launch()
    try:
        assert node.process is not None
        code = node.process.wait(timeout=60)
    finally:
        node.stop()
    assert code == 1, node.log()
    assert [hello["type"] for hello in seen] == ["hello", "hello", "hello"]
    assert all(hello["payload"]["token"] == "arm_test_token" for hello in seen)
    assert "the server closed the session: 4401 the token was refused (unknown token)" in (
        node.log()
    )


def test_a_state_file_entry_off_the_protocol_is_skipped_and_the_rest_load(
    tmp_path: Path,
) -> None:
    # Decoding errors are ProtocolErrors (no longer ValueErrors): the daemon's state
    # file must still skip the one entry it cannot read, not fail to start.
    spec = protocol.AllocationSpec(
        id="a-1",
        tenant="acme",
        component="agent",
        name="agent-0",
        index=0,
        type="service",
        spec_hash="h",
        command=["true"],
    )
    good = statefile.Entry(
        spec=spec,
        report=protocol.ReplicaReport(id="a-1", state="running"),
        process=None,
        consecutive=0,
        restart_pending=False,
        spawned=False,
    )
    path = tmp_path / statefile.FILE_NAME
    statefile.dump(path, [good])
    body = json.loads(path.read_text())
    bad = json.loads(json.dumps(body["allocations"][0]))
    bad["spec"]["colour"] = "blue"
    body["allocations"].insert(0, bad)
    path.write_text(json.dumps(body))
    assert statefile.load(path) == [good]
