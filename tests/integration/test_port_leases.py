"""Node daemons on one host, of one server or of two, never hand out the same port.

The replicas here never bind their port (`sleep`), as a replica still starting does
not: every daemon's bind probe sees every port free, and only the host-wide lease
(node/leases.py) keeps a port one daemon handed out from another. The daemons share a
small `--dynamic-ports` range, exactly as large as the replicas they are given
together, so without leases a collision is all but certain (the chance two daemons'
8 random picks of 16 ports miss each other is 1 in 12,870).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from armillary import errors
from armillary.node import leases
from tests.support import ports
from tests.support.api import apply, replicas
from tests.support.documents import ACME, stack, tenant
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.only_backend("sqlite")  # leases live on the host, not in the store

SILENT = {  # holds a dynamic port and never binds it
    "name": "silent",
    "command": ["sleep", "600"],
    "ports": [{"name": "http"}],
    "stop_grace_s": 1,
}


def silent_tenant(name: str, *, replicas: int) -> list[dict[str, Any]]:
    component = {**SILENT, "replicas": replicas}
    return [ACME, stack(f"s-{name}", component), tenant(name, f"s-{name}", name)]


def running_ports(server: ServerProcess, name: str, count: int) -> dict[str, list[int]]:
    """Each node's ports of tenant `name`, once its `count` replicas all run."""
    seen: dict[str, list[int]] = {}

    def all_running() -> bool:
        items = replicas(server, name)
        if len(items) != count or any((r["report"] or {}).get("state") != "running" for r in items):
            return False
        seen.clear()
        for item in items:
            seen.setdefault(item["node"], []).append(item["ports"]["http"])
        return True

    wait_for(all_running, timeout_s=60, what=f"{count} replicas of {name} to run")
    return seen


@pytest.fixture
def shared(tmp_path: Path) -> tuple[range, Path]:
    """A dynamic port range reserved for this test, and a lease directory."""
    return ports.free_ports(24), tmp_path / "leases"


def daemon(
    server: ServerProcess, name: str, data_dir: Path, shared: tuple[range, Path]
) -> NodeProcess:
    block, lease_dir = shared
    return NodeProcess(
        server=server,
        data_dir=data_dir,
        name=name,
        extra_args=[
            "--dynamic-ports",
            f"{block.start}-{block[-1]}",
            "--port-leases",
            str(lease_dir),
        ],
    )


def test_daemons_of_one_server_and_of_two_never_share_a_port(
    server: ServerProcess, shared: tuple[range, Path], tmp_path: Path
) -> None:
    other = ServerProcess(home=tmp_path / "other-home", database_url=None)
    nodes = [
        daemon(server, "lease-a", tmp_path / "a", shared),
        daemon(server, "lease-b", tmp_path / "b", shared),
        daemon(other, "lease-c", tmp_path / "c", shared),
    ]
    try:
        other.start()
        for node in nodes:
            node.start()
        # Both servers place at once: the three daemons pick their ports concurrently.
        apply(server, *silent_tenant("one", replicas=16))
        apply(other, *silent_tenant("two", replicas=8))
        held = running_ports(server, "one", 16) | running_ports(other, "two", 8)
        assert sorted(held) == ["lease-a", "lease-b", "lease-c"]
        every = [port for node_ports in held.values() for port in node_ports]
        assert sorted(every) == list(shared[0]), held  # each port handed out exactly once

        # Each port is leased, and its lease file names the daemon holding it.
        for name, node_ports in held.items():
            data_dir = tmp_path / name.removeprefix("lease-")
            for port in node_ports:
                assert leases.lock(shared[1], port) is None
                label = (shared[1] / f"{port}.lock").read_text()
                assert f"the node daemon of {data_dir}" in label
    finally:
        for node in nodes:
            node.stop()
        other.stop()


def test_a_daemon_killed_and_restarted_takes_its_leases_back(
    server: ServerProcess, shared: tuple[range, Path], tmp_path: Path
) -> None:
    node = daemon(server, "lease-d", tmp_path / "d", shared)
    node.stop_workloads_on_exit = True
    try:
        node.start()
        apply(server, *silent_tenant("three", replicas=4))
        (node_ports,) = running_ports(server, "three", 4).values()
        node.kill()  # kill -9: the kernel drops its leases; its replicas run on
        for port in node_ports:
            fd = leases.lock(shared[1], port)
            assert fd is not None, f"port {port} is still leased by a dead daemon"
            os.close(fd)
        node.start()  # adopts the replicas and leases their ports again
        wait_for(
            lambda: all(not _free(shared[1], port) for port in node_ports),
            timeout_s=30,
            what="the restarted daemon to lease its replicas' ports",
        )
        assert sorted(running_ports(server, "three", 4)["lease-d"]) == sorted(node_ports)
    finally:
        node.stop()


def _free(lease_dir: Path, port: int) -> bool:
    fd = leases.lock(lease_dir, port)
    if fd is None:
        return False
    os.close(fd)
    return True


def test_a_fixed_port_another_daemon_leases_is_refused_naming_it(
    server: ServerProcess, shared: tuple[range, Path], tmp_path: Path
) -> None:
    port = ports.free_port()
    fixed = {**SILENT, "ports": [{"name": "http", "port": port}]}
    other = ServerProcess(home=tmp_path / "other-home", database_url=None)
    first = daemon(server, "lease-f", tmp_path / "f", shared)
    second = daemon(other, "lease-g", tmp_path / "g", shared)
    try:
        other.start()
        first.start()
        second.start()
        apply(server, ACME, stack("s-four", fixed), tenant("four", "s-four", "four"))
        running_ports(server, "four", 1)  # holds the port, never binds it
        apply(other, ACME, stack("s-five", fixed), tenant("five", "s-five", "five"))

        def refused() -> dict[str, Any] | None:
            items = replicas(other, "five")
            report = (items[0]["report"] or {}) if items else {}
            return report if report.get("reason") == "PortInUse" else None

        report = wait_for(refused, timeout_s=30, what="the second replica to be refused")
        assert (
            f"port {port} (http) is leased by the node daemon of {tmp_path / 'f'}"
            in (report["message"])
        )
        assert "for replica" in report["message"]
    finally:
        second.stop()
        first.stop()
        other.stop()


def test_a_private_lease_directory_another_user_may_write_is_refused(tmp_path: Path) -> None:
    shared_dir = tmp_path / "open"
    shared_dir.mkdir()
    shared_dir.chmod(0o777)  # as a directory another user made in /tmp would be
    refused = leases.Leases(shared_dir / "ports", holder="test", private=True)
    with pytest.raises(errors.PermanentError, match="is not this user's alone"):
        refused.open()
    mine = tmp_path / "mine"
    held = leases.Leases(mine / "ports", holder="test", private=True)
    held.open()  # made here, 0700: accepted
    port = ports.free_port()
    assert held.take(port, owner="r") is None
    assert held.holder(port) == "test, for replica r"
    held.close()
