"""Placement across three real node daemons: labels, declared capacity, cordon, spread.

Three daemons on loopback, each with its own `--labels` and a capacity it declares
(`--cpu-millicores`, `--memory-mb`) far below the machine's, so the scheduler sees
three different nodes. Every replica is a `sleep` that holds no port. Each test
applies its own tenant and removes it at the end, so what one test placed does not
take room another test counts on. Without the selector, the declared capacity, the
cordon or spreading, the replicas land elsewhere and the assertions on their nodes
fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api import apply, condition, delete, replicas
from tests.support.cli import invoke
from tests.support.documents import ACME, stack, tenant
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

# name → (labels, CPU millicores, memory MiB) each daemon declares
NODES = {
    "place-small": ("zone=eu,disk=hdd", 2000, 256),
    "place-medium": ("zone=eu,disk=ssd", 2000, 1024),
    "place-large": ("zone=us,disk=ssd", 4000, 4096),
}


@pytest.fixture(scope="module")
def nodes(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[NodeProcess]]:
    """The three daemons, started together (each waits for the others' start-up only once)."""
    daemons = [
        NodeProcess(
            server=server,
            data_dir=tmp_path_factory.mktemp(name),
            name=name,
            extra_args=["--labels", labels, "--cpu-millicores", str(cpu), "--memory-mb", str(mb)],
        )
        for name, (labels, cpu, mb) in NODES.items()
    ]
    try:
        for daemon in daemons:
            daemon.launch()
        for daemon in daemons:
            wait_for(daemon.connected, timeout_s=30, what=f"node {daemon.name} to connect")
        apply(server, ACME)
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


def sleeper(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": ["sleep", "600"], "stop_grace_s": 1, **extra}


def placed(server: ServerProcess, name: str, count: int) -> list[str]:
    """The nodes of tenant `name`'s replicas, once all `count` of them run."""

    def running() -> list[str] | None:
        items = replicas(server, name)
        if len(items) != count or any((r["report"] or {}).get("state") != "running" for r in items):
            return None
        return sorted(r["node"] for r in items)

    return wait_for(running, timeout_s=60, what=lambda: f"{count} replicas of {name} to run")


def unplaced(server: ServerProcess, name: str, component: str) -> str:
    """Why no node takes `component` of tenant `name`, as its status says."""

    def said() -> str | None:
        with server.client() as http:
            status = http.get(f"/api/v1/tenants/{name}").json().get("status", {})
        why: str | None = status.get("components", {}).get(component, {}).get("unplaced")
        return why

    return wait_for(said, timeout_s=30, what=f"{name}/{component} to be reported unplaced")


@pytest.fixture
def own_tenant(server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    """A tenant name of the test's own (`labels` for `test_replicas_land_only_on_nodes_
    with_the_labels`), deleted with its replicas afterwards."""
    name = "p-" + request.node.originalname.rsplit("_", 1)[-1]
    yield name
    delete(server, "tenants", name)
    wait_for(lambda: not replicas(server, name), timeout_s=30, what=f"{name}'s replicas gone")


def test_the_nodes_offer_what_they_declare(server: ServerProcess, nodes: list[NodeProcess]) -> None:
    with server.client() as http:
        listed = {n["name"]: n for n in http.get("/api/v1/nodes").json()["items"]}
    for name, (labels, cpu, mb) in NODES.items():
        assert listed[name]["capacity"] == {"cpuMillicores": cpu, "memoryMb": mb}
        assert listed[name]["labels"] == dict(p.split("=") for p in labels.split(","))


def test_replicas_land_only_on_nodes_with_the_labels(
    server: ServerProcess, nodes: list[NodeProcess], own_tenant: str
) -> None:
    ssd_in_eu = sleeper("ssd", replicas=3, node_labels={"zone": "eu", "disk": "ssd"})
    ssd = sleeper("anywhere-ssd", replicas=2, node_labels={"disk": "ssd"})
    nowhere = sleeper("on-mars", node_labels={"zone": "mars"})
    apply(server, stack(own_tenant, ssd_in_eu, ssd, nowhere), tenant(own_tenant, own_tenant))

    placed(server, own_tenant, 5)
    by_component = {
        c: sorted(r["node"] for r in replicas(server, own_tenant, c))
        for c in ("ssd", "anywhere-ssd")
    }
    # Spread would put the three apart; only one node is in eu with an ssd.
    assert by_component["ssd"] == ["place-medium"] * 3
    assert by_component["anywhere-ssd"] == ["place-large", "place-medium"]
    assert replicas(server, own_tenant, "on-mars") == []
    why = unplaced(server, own_tenant, "on-mars")
    assert why == "no node fits: 3 node(s) lack label zone=mars"
    ready = condition(server, own_tenant)
    assert ready is not None and ready["status"] == "False"
    assert "on-mars: no node fits" in ready["message"]


def test_a_replica_goes_where_there_is_room_and_waits_when_no_node_has_the_memory(
    server: ServerProcess, nodes: list[NodeProcess], own_tenant: str
) -> None:
    # 512 MiB: more than the small node offers, so the medium and large nodes take the two.
    middling = sleeper("middling", replicas=2, resources={"memory": "512Mi"})
    # 1.5 GiB: only the large node has it; both go there rather than be spread apart.
    big = sleeper("big", replicas=2, resources={"memory": "1536Mi", "cpu": 1})
    # 8 GiB: more than any node offers.
    huge = sleeper("huge", resources={"memory": "8Gi"})
    apply(server, stack(own_tenant, middling, big, huge), tenant(own_tenant, own_tenant))

    placed(server, own_tenant, 4)
    assert sorted(r["node"] for r in replicas(server, own_tenant, "middling")) == [
        "place-large",
        "place-medium",
    ]
    assert [r["node"] for r in replicas(server, own_tenant, "big")] == ["place-large"] * 2
    assert replicas(server, own_tenant, "huge") == []
    why = unplaced(server, own_tenant, "huge")
    assert why == "no node fits: 3 node(s) have too little memory"


def test_no_new_replica_lands_on_a_node_while_it_is_cordoned(
    server: ServerProcess, nodes: list[NodeProcess], own_tenant: str
) -> None:
    with server.client() as http:
        assert http.post("/api/v1/nodes/place-large/cordon").status_code == 200
        try:
            apply(
                server,
                stack(own_tenant, sleeper("web", replicas=4)),
                tenant(own_tenant, own_tenant),
            )
            assert placed(server, own_tenant, 4) == ["place-medium"] * 2 + ["place-small"] * 2
        finally:
            assert http.post("/api/v1/nodes/place-large/uncordon").status_code == 200
    # Uncordoned, the node takes new replicas again: the fifth goes to the empty one.
    apply(server, stack(own_tenant, sleeper("web", replicas=5)), tenant(own_tenant, own_tenant))
    assert placed(server, own_tenant, 5).count("place-large") == 1


def test_three_replicas_of_a_component_land_on_three_nodes_by_spread(
    server: ServerProcess, nodes: list[NodeProcess], own_tenant: str
) -> None:
    apply(server, stack(own_tenant, sleeper("web", replicas=3)), tenant(own_tenant, own_tenant))
    assert placed(server, own_tenant, 3) == sorted(NODES)


def test_replicas_no_node_takes_are_pending_with_each_reason_counted_until_one_can(
    server: ServerProcess, nodes: list[NodeProcess], own_tenant: str
) -> None:
    """2 GiB on an ssd: the small node lacks the label, the medium one the memory, the
    large one is cordoned. Both replicas are Pending in the API, `ps` and `describe`,
    every node counted under its reason; uncordoned, the large node takes them and
    they leave the list."""
    big = sleeper("big", replicas=2, node_labels={"disk": "ssd"}, resources={"memory": "2Gi"})
    why = (
        "no node fits: 1 node(s) cordoned, 1 node(s) have too little memory,"
        " 1 node(s) lack label disk=ssd"
    )
    with server.client() as http:
        assert http.post("/api/v1/nodes/place-large/cordon").status_code == 200
        try:
            apply(server, stack(own_tenant, sleeper("web"), big), tenant(own_tenant, own_tenant))
            placed(server, own_tenant, 1)
            assert unplaced(server, own_tenant, "big") == why
            listed = http.get("/api/v1/replicas", params={"tenant": own_tenant}).json()
            assert [
                (u["component"], u["replica"], u["state"], u["reason"], u["message"])
                for u in listed["unplaced"]
            ] == [("big", i, "Pending", "Unschedulable", why) for i in (0, 1)]

            code, out, _ = invoke(server, "ps", own_tenant)
            assert code == 0
            rows = [line.split(None, 13) for line in out.splitlines()[1:]]  # 14 columns
            assert [(r[1], r[3], r[5], r[13]) for r in rows if r[1] == "big"] == [
                ("big", "<none>", "Pending", f"Unschedulable: {why}")
            ] * 2, out
            code, out, _ = invoke(server, "describe", "tenant", own_tenant)
            assert code == 0
            assert f"big         0,1        Unschedulable: {why}" in out, out
        finally:
            assert http.post("/api/v1/nodes/place-large/uncordon").status_code == 200
    assert placed(server, own_tenant, 3).count("place-large") == 2
    wait_for(lambda: not http_unplaced(server, own_tenant), timeout_s=30, what="none unplaced")
    code, out, _ = invoke(server, "ps", own_tenant)
    assert code == 0 and "Pending" not in out, out


def http_unplaced(server: ServerProcess, name: str) -> list[dict[str, Any]]:
    with server.client() as http:
        found: list[dict[str, Any]] = http.get("/api/v1/replicas", params={"tenant": name}).json()[
            "unplaced"
        ]
    return found
