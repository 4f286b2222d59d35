"""Credentials that end with what they were for, with a real server and real node
daemons, on SQLite and Postgres.

A followed log stream ends once its caller's key is revoked, or its tenant's tokens.

A node key is bound to one node name: minted with `node`, or bound by its first
hello; a hello under another name is closed with the fatal 4403. While a daemon of a
name is connected, a second daemon of that name is refused (4403) unless it asks for
a takeover, which is audited and closes the first one (4409); the same daemon (same
instance id) coming back is no takeover. The key never shows on a daemon's command
line: `armillary node` takes it from `--token-file` or `ARMILLARY_NODE_TOKEN`, and
`--token` still works but warns on stderr that every user of the machine can read it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.sync.connection import Connection

from armillary import protocol
from armillary.node.daemon import websocket_url
from tests.support.api import apply, delete, ready, replicas
from tests.support.cli import invoke
from tests.support.documents import agent, stack, tenant
from tests.support.nodes import NodeProcess
from tests.support.processes import command_line, processes_marked
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for


def _node_key(server: ServerProcess, node: str | None = None) -> str:
    body: dict[str, Any] = {"role": "node", "description": "test"}
    if node is not None:
        body["node"] = node
    with server.client() as http:
        answer = http.post("/api/v1/tokens", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["node"] == node
    token: str = answer.json()["token"]
    return token


def _audit(server: ServerProcess, **query: str) -> list[dict[str, Any]]:
    with server.client() as http:
        items: list[dict[str, Any]] = http.get("/api/v1/audit", params=query).json()["items"]
    return items


def _hello(server: ServerProcess, token: str, node: str, **extra: Any) -> ClientConnection:
    """A raw session that said hello as `node`; the caller reads the answer."""
    ws = connect(websocket_url(server.url), open_timeout=10)
    hello = protocol.Hello(
        node=node,
        token=token,
        address="127.0.0.1",
        capacity=protocol.Capacity(cpu_millicores=1000, memory_mb=512),
        **extra,
    )
    ws.send(json.dumps({"type": "hello", "seq": 1, "payload": protocol.encode(hello)}))
    return ws


def _closed_with(ws: Connection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_a_node_key_registers_only_as_the_node_it_names(
    server: ServerProcess, tmp_path: Path
) -> None:
    mark = uuid.uuid4().hex[:8]
    code, out, err = invoke(server, "token", "create", "--node", f"bound-{mark}")
    assert code == 0, err
    key = out.strip()
    key_id = key.split("_")[1]
    assert f"key {key_id} (node, bound to node bound-{mark})" in " ".join(err.split())
    code, out, _ = invoke(server, "token", "list")
    assert code == 0
    assert [line.split()[:3] for line in out.splitlines() if line.startswith(key_id)] == [
        [key_id, "node", f"bound-{mark}"]
    ]
    thief = NodeProcess(server=server, data_dir=tmp_path / "a", name=f"other-{mark}", token=key)
    thief.launch()
    try:
        assert thief.process is not None
        assert thief.process.wait(timeout=60) == 1, thief.log()
    finally:
        thief.stop()
    assert "4403 the server refused this node" in thief.log()
    assert f"is bound to node 'bound-{mark}'; it cannot register as 'other-{mark}'" in thief.log()
    with server.client() as http:
        names = [n["name"] for n in http.get("/api/v1/nodes").json()["items"]]
    assert f"other-{mark}" not in names  # refused before anything was recorded
    owner = NodeProcess(server=server, data_dir=tmp_path / "b", name=f"bound-{mark}", token=key)
    try:
        owner.start()
    finally:
        owner.stop()


def test_a_node_key_minted_without_a_name_binds_to_its_first_one(server: ServerProcess) -> None:
    mark = uuid.uuid4().hex[:8]
    key = _node_key(server)
    with _hello(server, key, f"first-{mark}") as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "welcome"
    with _hello(server, key, f"second-{mark}") as ws:
        code, reason = _closed_with(ws)
    assert code == protocol.CLOSE_REFUSED
    assert f"bound to node 'first-{mark}'" in reason
    with server.client() as http:
        keys = http.get("/api/v1/tokens").json()["items"]
    key_id = key.split("_")[1]
    assert [k["node"] for k in keys if k["id"] == key_id] == [f"first-{mark}"]
    (bound,) = _audit(server, verb="bind", name=key_id)
    assert bound["kind"] == "ApiKey" and bound["detail"] == {"node": f"first-{mark}"}
    assert bound["principal"] == f"token:{key_id}"
    assert key not in json.dumps(bound) and key.split("_", 2)[2] not in json.dumps(bound)


def test_a_live_node_name_is_taken_over_only_when_asked_and_audited(
    server: ServerProcess, tmp_path: Path
) -> None:
    name = f"live-{uuid.uuid4().hex[:8]}"
    key = _node_key(server, name)
    first = NodeProcess(server=server, data_dir=tmp_path / "first", name=name, token=key)
    second = NodeProcess(server=server, data_dir=tmp_path / "second", name=name, token=key)
    third = NodeProcess(
        server=server, data_dir=tmp_path / "third", name=name, token=key, takeover=True
    )
    try:
        first.start()
        second.launch()
        assert second.process is not None
        assert second.process.wait(timeout=60) == 1, second.log()
        assert "4403 the server refused this node" in second.log()
        assert "start this one with --takeover to replace it" in second.log()
        assert first.process is not None and first.process.poll() is None
        assert first.connected()
        assert _audit(server, verb="takeover", name=name) == []

        third.start()
        assert first.process.wait(timeout=60) == 1, first.log()
        assert "4409 another daemon connected with this node name" in first.log()
        assert third.connected()
        (taken,) = _audit(server, verb="takeover", name=name)
        assert taken["kind"] == "Node" and taken["principal"] == f"token:{key.split('_')[1]}"
        assert taken["source"] == "127.0.0.1"
    finally:
        for daemon in (first, second, third):
            daemon.stop()


def test_the_same_daemon_coming_back_replaces_its_own_session_without_a_takeover(
    server: ServerProcess,
) -> None:
    name = f"back-{uuid.uuid4().hex[:8]}"
    key = _node_key(server, name)
    instance = uuid.uuid4().hex
    with _hello(server, key, name, instance=instance) as old:
        assert json.loads(old.recv(timeout=30))["type"] == "welcome"
        with _hello(server, key, name, instance=uuid.uuid4().hex) as stranger:
            assert _closed_with(stranger)[0] == protocol.CLOSE_REFUSED
        with _hello(server, key, name, instance=instance) as new:
            assert json.loads(new.recv(timeout=30))["type"] == "welcome"
            assert _closed_with(old)[0] == protocol.CLOSE_REPLACED
    assert _audit(server, verb="takeover", name=name) == []


@pytest.mark.parametrize("token_by", ["file", "env"])
def test_the_node_key_never_shows_on_the_daemons_command_line(
    server: ServerProcess, tmp_path: Path, token_by: str
) -> None:
    key = _node_key(server)
    node = NodeProcess(
        server=server,
        data_dir=tmp_path / "node",
        name=f"node-argv-{token_by}",
        token=key,
        token_by="file" if token_by == "file" else "env",
    )
    try:
        node.start()
        assert node.process is not None
        seen = command_line(node.process.pid)
        assert "armillary node" in seen
        assert key not in seen
        assert key.split("_", 2)[2] not in seen  # not even the secret part
        assert "warning" not in node.log()
    finally:
        node.stop()


def test_a_key_given_with_token_is_used_but_warned_about(tmp_path: Path) -> None:
    # A bad label stops the daemon before it connects: the warning comes first.
    done = subprocess.run(
        [sys.executable, "-m", "armillary", "node", "--token", "arm_x_y", "--labels", "bad"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "warning: --token puts the key on the command line" in done.stderr
    assert "--token-file PATH or ARMILLARY_NODE_TOKEN" in done.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("", "must hold the key alone"), ("a b\n", "must hold the key alone")],
)
def test_a_token_file_that_cannot_be_used_is_a_usage_error_naming_it(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "node.token"
    if content is not None:
        path.write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "armillary", "node", "--token-file", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"--token-file: {path}" in done.stderr or f"--token-file: cannot read {path}" in (
        done.stderr
    )
    assert message in done.stderr


def _followed_until_it_ends(server: ServerProcess, replica: str, token: str, revoke: Any) -> str:
    """Follow `replica`'s log as `token`, call `revoke()` once the stream is open, and
    read until the server ends the stream (within a generous deadline); the text."""
    received: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=server.url, headers=headers, timeout=60) as http,
        http.stream(
            "GET", f"/api/v1/replicas/{replica}/logs", params={"follow": True, "tail": 1}
        ) as response,
    ):
        assert response.status_code == 200
        revoke()
        deadline = time.monotonic() + 60
        for text in response.iter_text():  # health checks keep lines coming meanwhile
            received.append(text)
            assert time.monotonic() < deadline, "".join(received)[-2000:]
    return "".join(received)


def test_a_followed_log_stream_ends_when_its_credential_is_revoked(
    server: ServerProcess, node: NodeProcess
) -> None:
    mark = uuid.uuid4().hex[:8]
    name = f"follow-{mark}"
    apply(server, stack(f"s-{mark}", agent()), tenant(name, f"s-{mark}", mark))
    try:
        wait_for(lambda: ready(server, name), timeout_s=60, what="tenant Ready")
        [replica] = replicas(server, name)
        with server.client() as http:
            viewer = http.post("/api/v1/tokens", json={"role": "viewer"}).json()

        def revoke_key() -> None:
            with server.client() as http:
                assert http.post(f"/api/v1/tokens/{viewer['id']}/revoke").status_code == 200

        text = _followed_until_it_ends(server, replica["id"], viewer["token"], revoke_key)
        assert text.endswith("[armillary: the stream ended: token has been revoked]\n"), text

        with server.client() as http:
            minted = http.post(f"/api/v1/tenants/{name}/tokens", json={})
        assert minted.status_code == 200, minted.text

        def revoke_tenant() -> None:
            with server.client() as http:
                revoked = http.post(f"/api/v1/tenants/{name}/tokens/revoke")
            assert revoked.status_code == 200, revoked.text

        text = _followed_until_it_ends(server, replica["id"], minted.json()["token"], revoke_tenant)
        assert text.endswith(
            "[armillary: the stream ended: this tenant's tokens have been revoked]\n"
        ), text
    finally:
        delete(server, "tenants", name)
        wait_for(lambda: not processes_marked(mark), timeout_s=60, what="cleanup")


def test_a_connected_node_whose_key_is_revoked_is_closed_for_good(
    server: ServerProcess, tmp_path: Path
) -> None:
    name = f"revoked-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        created = http.post("/api/v1/tokens", json={"role": "node", "node": name}).json()
    daemon = NodeProcess(
        server=server, data_dir=tmp_path / "node", name=name, token=created["token"]
    )
    try:
        daemon.start()
        with server.client() as http:
            assert http.post(f"/api/v1/tokens/{created['id']}/revoke").status_code == 200
        assert daemon.process is not None
        assert daemon.process.wait(timeout=60) == 1, daemon.log()
    finally:
        daemon.stop()
    assert "4401 the token was refused (token has been revoked)" in daemon.log()
    assert not daemon.connected()
