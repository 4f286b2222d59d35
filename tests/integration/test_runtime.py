"""Stacks become supervised processes: a real server and a real node daemon run real
replicas, on SQLite and on Postgres. Each test uses its own tenant, marked through
its env so its processes can be counted."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from armillary.resources import naming
from tests.support.api import apply, condition, delete, ready, replicas
from tests.support.cli import invoke
from tests.support.documents import FAST_RESTART, agent, stack, tenant
from tests.support.nodes import NodeProcess
from tests.support.processes import alive, environ_pid, http_ok, processes_marked
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for


def fresh(prefix: str) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"{prefix}-{suffix}", suffix


def test_apply_runs_every_replica_healthy_and_the_tenant_is_ready(
    server: ServerProcess, node: NodeProcess
) -> None:
    name, mark = fresh("t")
    seed = {
        "name": "seed",
        "type": "job",
        "command": ["sh", "-c", 'echo seeded > "$ARMILLARY_DATA_DIR/seed"'],
    }
    reader = agent("reader", depends_on=["agent"])
    apply(
        server,
        stack(f"s-{mark}", seed, agent(replicas=2, depends_on=["seed"]), reader),
        tenant(name, f"s-{mark}", mark),
    )
    wait_for(lambda: ready(server, name), timeout_s=60, what="tenant Ready")

    items = replicas(server, name)
    services = [r for r in items if r["type"] == "service"]
    assert len(services) == 3
    assert all(r["report"]["state"] == "running" and r["report"]["healthy"] for r in services)
    assert all(http_ok(r["ports"]["http"]) for r in services)
    [job] = [r for r in items if r["type"] == "job"]
    assert job["report"]["state"] == "succeeded"
    reader_env = environ_pid(
        next(r for r in services if r["component"] == "reader")["report"]["pid"]
    )
    agent_ports = {r["ports"]["http"] for r in services if r["component"] == "agent"}
    assert int(reader_env["AGENT_URL"].rsplit(":", 1)[1]) in agent_ports
    assert reader_env["ARMILLARY_TENANT"] == name
    assert Path(reader_env["ARMILLARY_DATA_DIR"], "seed").read_text() == "seeded\n"

    with server.client() as http:
        status = http.get(f"/api/v1/tenants/{name}").json()["status"]
    assert status["replicas"] == {"desired": 4, "ready": 4, "updated": 4}
    assert len(processes_marked(mark)) == 3

    code, out, _ = invoke(server, "ps", name)
    assert code == 0
    assert out.count("running") == 3 and "succeeded" in out

    code, out, _ = invoke(server, "logs", f"{name}/agent")
    assert code == 0 and "listening on" in out
    # Health checks keep writing to the log, so only the count of a tail is stable.
    code, out, _ = invoke(server, "logs", f"{name}/agent", "--tail", "2")
    assert code == 0 and len(out.splitlines()) == 4, out  # of each of the 2 replicas
    code, out, _ = invoke(server, "logs", f"{name}/agent", "--tail", "2", "-r", "0")
    assert code == 0 and len(out.splitlines()) == 2, out

    code, out, err = invoke(
        server, "exec", f"{name}/agent", "--", "sh", "-c", 'echo "$ARMILLARY_TENANT $PORT"; exit 3'
    )
    assert code == 3, (out, err)
    assert out.split()[0] == name

    delete(server, "tenants", name)
    wait_for(
        lambda: not processes_marked(mark), timeout_s=30, what="every process of the tenant gone"
    )
    wait_for(lambda: not replicas(server, name), what="allocations removed")


def test_kill_9_of_a_replica_is_replaced_at_once_and_counted(
    server: ServerProcess, node: NodeProcess
) -> None:
    name, mark = fresh("k")
    apply(server, stack(f"s-{mark}", agent()), tenant(name, f"s-{mark}", mark))
    wait_for(lambda: ready(server, name), timeout_s=60, what="tenant Ready")
    [before] = replicas(server, name)
    pid = before["report"]["pid"]
    os.kill(pid, signal.SIGKILL)

    def replaced() -> dict[str, Any] | None:
        [now] = replicas(server, name)
        report = now["report"]
        return (
            report if report["pid"] != pid and report["state"] in ("starting", "running") else None
        )

    report = wait_for(replaced, timeout_s=15, what="a new process")
    assert report["restarts"] == 1
    assert now_alive(report["pid"])
    wait_for(lambda: ready(server, name), timeout_s=30, what="Ready again")
    delete(server, "tenants", name)
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="cleanup")


def now_alive(pid: int) -> bool:
    return alive(pid)


def test_a_command_that_always_exits_ends_in_crashloop_visible_everywhere(
    server: ServerProcess, node: NodeProcess
) -> None:
    name, mark = fresh("c")
    crasher = {
        "name": "crasher",
        "command": ["sh", "-c", "echo boom; exit 1"],
        "restart": FAST_RESTART,
    }
    apply(server, stack(f"s-{mark}", crasher), tenant(name, f"s-{mark}", mark))

    def crashlooping() -> dict[str, Any] | None:
        items = replicas(server, name)
        report = items[0]["report"] if items and items[0]["report"] else {}
        return report if report.get("state") == "crashloop" else None

    report = wait_for(crashlooping, timeout_s=30, what="crashloop")
    assert report["restarts"] >= 2
    # The tenant may already be Degraded by an earlier backoff: wait for the status a
    # reconcile writes after the crashloop report, not for the first Degraded.
    degraded = wait_for(
        lambda: (
            (c := condition(server, name, "Degraded"))
            and c["status"] == "True"
            and "crashloop" in c["message"]
            and c
        ),
        what="Degraded condition naming the crashloop",
    )
    assert "crasher" in degraded["message"]
    _code, out, _ = invoke(server, "ps", name)
    assert "crashloop" in out
    delete(server, "tenants", name)
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="cleanup")


def test_bad_commands_ports_and_health_checks_are_explained_and_disturb_nothing(
    server: ServerProcess, node: NodeProcess
) -> None:
    good, mark = fresh("good")
    apply(server, stack(f"s-{mark}", agent()), tenant(good, f"s-{mark}", mark))
    wait_for(lambda: ready(server, good), timeout_s=60, what="healthy neighbour Ready")
    [neighbour] = replicas(server, good)

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    cases = {
        "missing": (
            {"name": "missing", "command": ["/no/such/program"], "restart": FAST_RESTART},
            "CommandNotFound",
        ),
        "porttaken": (agent("porttaken", ports=[{"name": "http", "port": port}]), "PortInUse"),
        "neverhealthy": (
            agent(
                "neverhealthy",
                health_check={
                    "http": {"path": "/healthz", "port": "http", "expect_status": 204},
                    "interval_s": 0.1,
                    "failure_threshold": 2,
                },
            ),
            "unhealthy",
        ),
    }
    try:
        for key, (component, words) in cases.items():
            name = f"{key}-{mark}"
            apply(server, stack(f"s-{name}", component), tenant(name, f"s-{name}", mark))

            def degraded(name: str = name) -> dict[str, Any] | None:
                found = condition(server, name, "Degraded")
                return found if found and found["status"] == "True" else None

            found = wait_for(degraded, timeout_s=30, what=f"{key} Degraded")
            assert words in found["message"], found
            assert (condition(server, name) or {}).get("status") == "False"
    finally:
        taken.close()
    assert ready(server, good)
    [still] = replicas(server, good)
    assert still["report"]["pid"] == neighbour["report"]["pid"]
    assert still["report"]["restarts"] == 0, f"{neighbour['report']} then {still['report']}"
    for key in cases:
        delete(server, "tenants", f"{key}-{mark}")
    delete(server, "tenants", good)
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="cleanup")


def test_changing_env_rolls_replicas_with_never_a_moment_without_a_healthy_one(
    server: ServerProcess, node: NodeProcess
) -> None:
    name, mark = fresh("r")
    apply(server, stack(f"s-{mark}", agent(replicas=2)), tenant(name, f"s-{mark}", mark))
    wait_for(lambda: ready(server, name), timeout_s=60, what="tenant Ready")
    old_pids = {r["report"]["pid"] for r in replicas(server, name)}

    samples: list[bool] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            ports = [r["ports"]["http"] for r in replicas(server, name)]
            samples.append(any(http_ok(p) for p in ports))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        apply(
            server,
            stack(f"s-{mark}", agent(replicas=2)),
            tenant(name, f"s-{mark}", mark, overrides={"agent": {"env": {"VERSION": "2"}}}),
        )

        def rolled() -> bool:
            items = replicas(server, name)
            pids = {r["report"]["pid"] for r in items if r["report"]}
            return len(items) == 2 and not pids & old_pids and ready(server, name)

        wait_for(rolled, timeout_s=90, what="both replicas replaced")
    finally:
        stop.set()
        sampler.join()
    assert len(samples) > 5
    assert all(samples), f"{samples.count(False)} of {len(samples)} samples had no healthy replica"
    for item in replicas(server, name):
        assert environ_pid(item["report"]["pid"])["VERSION"] == "2"
    assert not [p for p in old_pids if alive(p)]

    # Scale up, then down.
    apply(
        server,
        stack(f"s-{mark}", agent(replicas=2)),
        tenant(
            name, f"s-{mark}", mark, overrides={"agent": {"replicas": 3, "env": {"VERSION": "2"}}}
        ),
    )
    wait_for(
        lambda: len(processes_marked(mark)) == 3 and ready(server, name),
        timeout_s=60,
        what="3 replicas",
    )
    apply(
        server,
        stack(f"s-{mark}", agent(replicas=2)),
        tenant(
            name, f"s-{mark}", mark, overrides={"agent": {"replicas": 1, "env": {"VERSION": "2"}}}
        ),
    )
    wait_for(
        lambda: len(processes_marked(mark)) == 1 and ready(server, name),
        timeout_s=60,
        what="1 replica",
    )
    delete(server, "tenants", name)
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="cleanup")


def test_nodes_command_lists_the_node(server: ServerProcess, node: NodeProcess) -> None:
    code, out, _ = invoke(server, "nodes")
    assert code == 0
    assert node.name in out and "Ready" in out


def test_heartbeats_bring_the_node_usage(server: ServerProcess, node: NodeProcess) -> None:
    def usage() -> dict[str, Any] | None:
        with server.client() as http:
            items = http.get("/api/v1/nodes").json()["items"]
        found = next(n for n in items if n["name"] == node.name)
        return found["usage"] if found["usage"].get("memoryTotalMb") else None

    seen = wait_for(usage, timeout_s=15, what="a heartbeat")
    assert seen["memoryTotalMb"] > 0
    assert 0 <= seen["cpuPercent"] <= 100 * os.cpu_count()  # type: ignore[operator]


def test_logs_follow_streams_new_output(server: ServerProcess, node: NodeProcess) -> None:
    name, mark = fresh("l")
    apply(server, stack(f"s-{mark}", agent()), tenant(name, f"s-{mark}", mark))
    wait_for(lambda: ready(server, name), timeout_s=60, what="tenant Ready")
    [replica] = replicas(server, name)
    received: list[str] = []
    with (
        server.client() as http,
        http.stream(
            "GET", f"/api/v1/replicas/{replica['id']}/logs", params={"follow": True, "tail": 0}
        ) as response,
    ):
        assert response.status_code == 200
        # The answer's headers may come before the node follows the file, and a line
        # written before that is not sent (tail=0): ask again on every chunk (health
        # checks keep them coming) until one is seen, within a deadline.
        deadline = time.monotonic() + 30
        http_ok(replica["ports"]["http"], "/followed-request")
        for text in response.iter_text():
            received.append(text)
            if "/followed-request" in "".join(received):
                break
            assert time.monotonic() < deadline, "".join(received)[-2000:]
            http_ok(replica["ports"]["http"], "/followed-request")
    assert "/followed-request" in "".join(received)
    delete(server, "tenants", name)
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="cleanup")


def test_a_cordoned_node_takes_no_new_replicas(server: ServerProcess, node: NodeProcess) -> None:
    name, mark = fresh("cord")
    assert invoke(server, "nodes", "cordon", node.name)[0] == 0
    try:
        apply(server, stack(f"s-{mark}", agent()), tenant(name, f"s-{mark}", mark))
        degraded = wait_for(
            lambda: (c := condition(server, name, "Degraded")) and c["status"] == "True" and c,
            timeout_s=30,
            what="Degraded: no node fits",
        )
        assert "cordoned" in degraded["message"]
        assert replicas(server, name) == []
        code, out, _ = invoke(server, "ps", name)
        assert code == 0
        [row] = [line.split(None, 6) for line in out.splitlines()[1:]]
        assert row[3:6] == ["<none>", "-", "Pending"], out
        assert row[6].endswith("Unschedulable: no node fits: 1 node(s) cordoned"), out
    finally:
        assert invoke(server, "nodes", "uncordon", node.name)[0] == 0
    wait_for(lambda: ready(server, name), timeout_s=60, what="placed once uncordoned")
    delete(server, "tenants", name)
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="cleanup")


def test_a_daemon_with_a_refused_token_stops_and_says_why(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import subprocess
    import sys

    data = tmp_path_factory.mktemp("refused")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "armillary",
            "node",
            "--server",
            server.url,
            "--token",
            "arm_bad_token",
            "--name",
            "refused",
            "--data-dir",
            str(data),
            "--tenant-uids",
            "off",  # as root, per-tenant users would need `data`'s parents open to them
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "the token was refused" in result.stderr


def test_a_replica_no_node_can_take_is_pending_in_ps_and_describe_with_why(
    server: ServerProcess, node: NodeProcess
) -> None:
    """Replicas asking more memory than any node has: the API lists them as unplaced,
    `ps` shows them Pending on <none> with the nodes counted per reason (and in
    `-o json`), and `describe tenant` names the component, the replicas and why."""
    name, mark = fresh("big")
    huge = agent("huge", replicas=2, resources={"memory": "1024Ti"})
    apply(server, stack(f"s-{mark}", agent(), huge), tenant(name, f"s-{mark}", mark))
    why = "no node fits: 1 node(s) have too little memory"
    with server.client() as http:
        listed = wait_for(
            lambda: (
                (r := http.get("/api/v1/replicas", params={"tenant": name}).json())["unplaced"]
                and r
            ),
            timeout_s=30,
            what="the unplaced replicas listed",
        )
        only = http.get("/api/v1/replicas", params={"tenant": name, "component": "agent"})
    assert only.json()["unplaced"] == []
    assert listed["unplaced"] == [
        {
            "tenant": name,
            "component": "huge",
            "replica": index,
            "name": naming.replica_name("huge", name, index),
            "state": "Pending",
            "reason": "Unschedulable",
            "message": why,
        }
        for index in (0, 1)
    ]
    assert {r["component"] for r in listed["items"]} == {"agent"}

    code, out, _ = invoke(server, "ps", name)
    assert code == 0, out
    pending = [line.split(None, 6) for line in out.splitlines() if "Pending" in line]
    assert len(pending) == 2, out
    for line in pending:
        assert line[1] == "huge" and line[3] == "<none>" and line[5] == "Pending", line
        assert line[6].endswith(f"Unschedulable: {why}"), line
    assert "agent" in out

    code, out, _ = invoke(server, "ps", f"{name}/huge", "-o", "json")
    assert code == 0
    shown = json.loads(out)
    assert [(r["state"], r["node"], r["replica"], r["message"]) for r in shown] == [
        ("Pending", None, 0, why),
        ("Pending", None, 1, why),
    ]

    code, out, _ = invoke(server, "describe", "tenant", name)
    assert code == 0
    placement = out.split("Could not place:\n", 1)[1].splitlines()
    assert placement[0].split() == ["COMPONENT", "REPLICAS", "REASON"]
    assert placement[1].split(None, 2) == ["huge", "0,1", f"Unschedulable: {why}"]
    delete(server, "tenants", name)
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="cleanup")
