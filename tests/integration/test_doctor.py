"""`armillary doctor` against a real server on SQLite and Postgres, and a real node
daemon: a healthy setup is all ok; no node, a cordoned node or a node whose heartbeats
stopped is a warning (exit 0, exit 1 with --strict); a schema off its head, a key that
does not open the store's key check or a server nobody answers at is a failure with
what to do (exit 1). The tests without a node come first: the module's node, once
started, stays connected."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from websockets.sync.client import connect

from armillary import protocol
from armillary.auth import keys
from armillary.auth import secrets as vaults
from armillary.node.daemon import websocket_url
from armillary.store.database import Database
from tests.support.api import apply
from tests.support.cli import invoke, run
from tests.support.documents import secret
from tests.support.nodes import NodeProcess
from tests.support.ports import free_port
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

# Nodes beat every second, so one stopped for a few seconds is stale (3 intervals),
# while a loaded machine's late beat is not.
SERVER_ENV = {"ARMILLARY_NODE_HEARTBEAT_S": "1"}


def doctor(server: ServerProcess, *args: str) -> tuple[int, dict[str, Any]]:
    """Exit code and the JSON report of `armillary doctor -o json ARGS`."""
    code, out, err = invoke(server, "doctor", "-o", "json", *args)
    assert code in (0, 1), err
    report: dict[str, Any] = json.loads(out)
    return code, report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def not_ok(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["status"] in ("warn", "fail")]


def execute(server: ServerProcess, statement: str, **params: Any) -> Any:
    """One statement on the server's store behind its back, as an operator's mistake
    would write it; the first column of its first row, if it reads one. (Run to its end
    here: the CLI the tests drive runs an event loop of its own.)"""

    async def session() -> Any:
        db = await Database.open(server.store_url, migrate=False)
        try:
            async with db.write() as conn:
                result = await conn.execute(text(statement), params)
                return result.scalar_one() if result.returns_rows else None
        finally:
            await db.close()

    return asyncio.run(session())


def test_without_a_node_every_check_but_nodes_is_ok(server: ServerProcess, backend: str) -> None:
    code, report = doctor(server)
    assert code == 0 and report["healthy"] is True
    checks = by_name(report)
    assert checks["server"]["status"] == "ok" and "fix" not in checks["server"]
    assert server.url in checks["server"]["finding"]
    assert checks["version"]["status"] == "ok"
    assert checks["store"]["status"] == "ok"
    assert checks["store"]["finding"].startswith("postgres" if backend == "postgres" else "sqlite")
    assert checks["migrations"]["status"] == "ok" and "head" in checks["migrations"]["finding"]
    assert checks["secret key"]["status"] == "ok"
    assert checks["home directory"]["status"] == "ok"
    assert str(server.home) in checks["home directory"]["finding"]
    assert checks["postgres listen"]["status"] == "n/a"
    assert [c["name"] for c in not_ok(report)] == ["nodes"]
    assert server.url in checks["nodes"]["fix"]  # says how to start one, here


def test_strict_makes_a_warning_fail_and_the_table_says_what_to_do(server: ServerProcess) -> None:
    code, report = doctor(server, "--strict")
    assert code == 1 and report["healthy"] is False
    code, out, _ = invoke(server, "doctor")
    assert code == 0
    assert "nodes" in out and "WARN" in out
    assert "What to do:" in out and f"armillary node --server {server.url}" in out


def test_a_refused_token_fails_with_what_to_do(server: ServerProcess) -> None:
    code, out, _ = invoke(server, "doctor", token="arm_wrong_token")
    assert code == 1
    assert f"{server.url} answers but refuses this token" in out
    assert "--token or ARMILLARY_TOKEN" in out


def test_a_schema_off_its_head_fails(server: ServerProcess) -> None:
    _, report = doctor(server)
    head = by_name(report)["migrations"]["finding"].split("(")[1].rstrip(")")
    execute(server, "UPDATE alembic_version SET version_num = '0001'")
    try:
        code, report = doctor(server)
        migrations = by_name(report)["migrations"]
        assert code == 1 and report["healthy"] is False
        assert migrations["status"] == "fail"
        assert "0001" in migrations["finding"] and head in migrations["finding"]
        assert "restart `armillary server`" in migrations["fix"]
    finally:
        execute(server, "UPDATE alembic_version SET version_num = :head", head=head)
    assert doctor(server)[0] == 0


def test_the_secret_key_is_checked_against_the_store_and_never_shown(
    server: ServerProcess,
) -> None:
    apply(server, secret("doctor-db", {"password": "hunter2"}))
    code, out, _ = invoke(server, "doctor", "-o", "json")
    check = by_name(json.loads(out))["secret key"]
    assert code == 0 and check["status"] == "ok"
    assert "opens the store's key check" in check["finding"]
    key = (server.home / keys.KEY_FILE).read_text().strip()
    assert key not in out and "hunter2" not in out

    # Another server with another key wrote the check: this server's key no longer opens it.
    other = vaults.Vault.of(keys.KeyRing(current=os.urandom(keys.KEY_BYTES))).check_token()
    mine = execute(server, "SELECT token FROM key_checks")
    execute(server, "UPDATE key_checks SET token = :token", token=other)
    try:
        code, out, _ = invoke(server, "doctor")
        assert code == 1
        assert "does not open the store's key check" in out
        assert "same ARMILLARY_SECRET_KEY" in out
        assert key not in out
    finally:
        execute(server, "UPDATE key_checks SET token = :token", token=mine)


def healthy(server: ServerProcess) -> dict[str, Any] | None:
    code, report = doctor(server, "--strict")
    return report if code == 0 and not not_ok(report) else None


def test_a_healthy_setup_with_a_node_is_all_ok(server: ServerProcess, node: NodeProcess) -> None:
    def skew_known() -> dict[str, Any] | None:
        report = healthy(server)
        known = report is not None and by_name(report)["clock skew"]["status"] == "ok"
        return report if known else None

    report = wait_for(skew_known, timeout_s=30, what="doctor to find all ok, skew known")
    checks = by_name(report)
    assert "nodes" not in checks
    assert checks[f"node/{node.name}"]["status"] == "ok"
    assert "connected, heartbeat" in checks[f"node/{node.name}"]["finding"]
    assert "1 node(s) within" in checks["clock skew"]["finding"]


def test_a_cordoned_node_warns(server: ServerProcess, node: NodeProcess) -> None:
    assert invoke(server, "nodes", "cordon", node.name)[0] == 0
    try:
        code, report = doctor(server)
        check = by_name(report)[f"node/{node.name}"]
        assert code == 0 and check["status"] == "warn"
        assert "cordoned" in check["finding"]
        assert check["fix"] == f"when it is ready again: armillary nodes uncordon {node.name}"
        assert doctor(server, "--strict")[0] == 1
    finally:
        assert invoke(server, "nodes", "uncordon", node.name)[0] == 0


@contextmanager
def frozen(node: NodeProcess) -> Iterator[None]:
    """The daemon stopped (SIGSTOP): its session stays open, its heartbeats stop."""
    assert node.process is not None
    node.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        node.process.send_signal(signal.SIGCONT)


def test_a_node_whose_heartbeats_stopped_warns(server: ServerProcess, node: NodeProcess) -> None:
    wait_for(lambda: healthy(server), timeout_s=30, what="doctor to find all ok")
    name = f"node/{node.name}"

    def stale() -> dict[str, Any] | None:
        code, report = doctor(server)
        check = by_name(report)[name]
        return check if code == 0 and check["status"] == "warn" else None

    with frozen(node):
        check = wait_for(stale, timeout_s=30, what="doctor to find the node stale")
    assert "last heartbeat was" in check["finding"] and "expected every 1s" in check["finding"]
    assert "node daemon's log" in check["fix"]
    wait_for(lambda: healthy(server), timeout_s=30, what="the node to beat again")


def test_an_unreachable_server_fails_with_what_to_do(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {"ARMILLARY_HOME": str(tmp_path), "ARMILLARY_URL": url, "ARMILLARY_TOKEN": None}
    code, out, err = run("doctor", env=env)
    assert code == 1, err
    assert f"no answer at {url}" in out
    assert "point --server / ARMILLARY_URL at the running one" in out
    code, out, _ = run("doctor", "-o", "json", env=env)
    report = json.loads(out)
    assert code == 1 and report["healthy"] is False
    assert [(c["name"], c["status"]) for c in report["checks"]] == [("server", "fail")]


def test_a_node_clock_off_the_servers_warns_naming_it(server: ServerProcess) -> None:
    """Last in the module: the probe node stays registered (disconnected) after it."""
    hello = protocol.Hello(
        node="probe-skewed",
        token=server.token,
        address="127.0.0.1",
        capacity=protocol.Capacity(cpu_millicores=1000, memory_mb=512),
    )
    usage = protocol.Usage(
        cpu_percent=1.0, memory_used_mb=1, memory_total_mb=2, disk_used_percent=1.0
    )
    with connect(websocket_url(server.url), open_timeout=10) as ws:
        ws.send(json.dumps({"type": "hello", "seq": 1, "payload": protocol.encode(hello)}))
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        beat = protocol.Heartbeat(usage=usage, sent_at=time.time() - 30)  # 30 s behind
        ws.send(json.dumps({"type": "heartbeat", "seq": 2, "payload": protocol.encode(beat)}))

        def warned() -> dict[str, Any] | None:
            check = by_name(doctor(server)[1])["clock skew"]
            return check if check["status"] == "warn" else None

        check = wait_for(warned, timeout_s=30, what="doctor to find the skewed clock")
    assert "probe-skewed +30" in check["finding"]
    assert "NTP" in check["fix"]
