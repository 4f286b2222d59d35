"""The runtimes behind one contract, and the kubernetes runtime's own behaviour: a real
server (SQLite and Postgres) and, for Kubernetes, kmock's API emulator with the
cluster's controllers played by tests/support/kubernetes.py (no API server can be
installed here; docs/kubernetes.md). The nodes side runs a real node daemon.

- the contract, for both runtimes: an instance applied is observed Ready; a change
  makes new objects; the tenant deleted, everything it had is removed;
- a tenant moved nodes → kubernetes → nodes by its `spec.runtime`;
- a release whose pods crash-loop on the cluster: rolled back (the previous template
  applied again), Degraded with the Kubernetes reason, the release's wave stopped;
- a Cluster that cannot be reached or whose kubeconfig is not usable: the tenant's
  condition names the Cluster and why, other tenants go on;
- API requests per tenant apply: at most one per object plus one;
- a tenant's schedule applied as its CronJob (Armillary keeps its next fire time);
- seed Jobs applied in `depends_on` order (a Job waits until its dependency is done);
- an agent run for a tenant on the cluster calls its Service through the service
  proxy (the emulator's: tests/support/kubernetes.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from armillary.resources import naming
from tests.support.api import apply, delete, replicas
from tests.support.documents import API, agent, org, secret, stack, tenant
from tests.support.kubernetes import FakeCluster
from tests.support.nodes import NodeProcess
from tests.support.ports import free_port
from tests.support.processes import http_ok
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.long_running
CLUSTER = "emu"
ON_CLUSTER = {"kubernetes": {"cluster": CLUSTER}}
IMAGE = "registry.example.com/support/agent"
AGENT_APP = Path(__file__).with_name("agent_app.py")


@pytest.fixture(scope="module")
def cluster(server: ServerProcess) -> Iterator[FakeCluster]:
    """The emulator, and the Cluster `emu` reaching it through a kubeconfig Secret."""
    with FakeCluster() as fake:
        apply(server, *cluster_documents(CLUSTER, fake.kubeconfig()))
        yield fake


def cluster_documents(name: str, kubeconfig: str) -> list[dict[str, Any]]:
    return [
        secret(f"{name}-kubeconfig", {"KUBECONFIG": kubeconfig}),
        {
            "apiVersion": API,
            "kind": "Cluster",
            "metadata": {"name": name},
            "spec": {"kubeconfig": {"secret": f"{name}-kubeconfig", "key": "KUBECONFIG"}},
        },
    ]


def fresh(prefix: str) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"{prefix}-{suffix}", suffix


def image_agent(name: str = "agent", **extra: Any) -> dict[str, Any]:
    component: dict[str, Any] = {
        "name": name,
        "image": f"{IMAGE}:1.0.0",
        "ports": [{"name": "http", "port": 8080}],
        "health_check": {"http": {"path": "/healthz", "port": "http"}},
    }
    component.update(extra)
    return component


def status_of(server: ServerProcess, name: str) -> dict[str, Any]:
    with server.client() as http:
        response = http.get(f"/api/v1/tenants/{name}")
    if response.status_code != 200:
        return {}
    found: dict[str, Any] = response.json().get("status", {})
    return found


def conditions(server: ServerProcess, name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status_of(server, name).get("conditions", [])}


def is_ready(server: ServerProcess, name: str) -> bool:
    return conditions(server, name).get("Ready", {}).get("status") == "True"


def deployments(cluster: FakeCluster, name: str) -> list[dict[str, Any]]:
    return cluster.live("apps/v1/deployments", naming.namespace_name(name))


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def gone_from_cluster(cluster: FakeCluster, name: str) -> bool:
    ns = naming.namespace_name(name)
    left = [
        o for plural in ("apps/v1/deployments", "v1/services") for o in cluster.live(plural, ns)
    ]
    return not left and ns not in cluster.namespaces()


# --- the contract, for both runtimes --------------------------------------------------


@pytest.mark.parametrize("runtime", ["nodes", "kubernetes"])
def test_runtime_contract_apply_change_remove(
    server: ServerProcess, node: NodeProcess, cluster: FakeCluster, runtime: str
) -> None:
    name, mark = fresh(f"c{runtime[0]}")
    on_nodes = runtime == "nodes"
    component = agent() if on_nodes else image_agent()
    choice: Any = "nodes" if on_nodes else ON_CLUSTER
    apply(server, stack(f"s-{mark}", component), tenant(name, f"s-{mark}", mark, runtime=choice))

    wait_for(lambda: is_ready(server, name), timeout_s=60, what="tenant Ready")
    status = status_of(server, name)
    assert status["runtime"] == ("nodes" if on_nodes else f"kubernetes/{CLUSTER}")
    assert status["components"]["agent"] == {"desired": 1, "ready": 1, "updated": 1}

    def objects() -> list[str]:
        if on_nodes:
            return [r["id"] for r in replicas(server, name)]
        return [d["metadata"]["name"] for d in deployments(cluster, name)]

    before = objects()
    assert len(before) == 1
    if on_nodes:
        assert deployments(cluster, name) == []
    else:
        assert replicas(server, name) == []
        assert (
            deployments(cluster, name)[0]["spec"]["template"]["spec"]["containers"][0]["image"]
            == f"{IMAGE}:1.0.0"
        )

    # A change: new objects (a new replica on nodes; a new pod template on the cluster).
    apply(server, tenant(name, f"s-{mark}", mark, runtime=choice, env={"COLOR": "blue"}))

    def changed() -> bool:
        if not is_ready(server, name):
            return False
        if on_nodes:
            return objects() != before and len(objects()) == 1
        return env_of(deployments(cluster, name)[0]).get("COLOR") == "blue"

    wait_for(changed, timeout_s=60, what="the change rolled out")

    delete(server, "tenants", name)
    if on_nodes:
        wait_for(lambda: replicas(server, name) == [], timeout_s=60, what="replicas removed")
    else:
        wait_for(lambda: gone_from_cluster(cluster, name), timeout_s=60, what="objects removed")


# --- moving between runtimes -----------------------------------------------------------


def test_a_tenant_moves_from_nodes_to_kubernetes_and_back(
    server: ServerProcess, node: NodeProcess, cluster: FakeCluster
) -> None:
    """A stack with a process (`agent`) and an image (`web`): each runtime runs what it
    can and says why it cannot run the other."""
    name, mark = fresh("mv")
    parts = stack(f"s-{mark}", agent(), image_agent("web"))
    apply(server, parts, tenant(name, f"s-{mark}", mark))

    def settled_on_nodes() -> bool:
        status = status_of(server, name)
        components = status.get("components", {})
        return (
            status.get("runtime") == "nodes"
            and components.get("agent", {}).get("ready") == 1
            and "container runtime" in " ".join(components.get("web", {}).get("problems", []))
        )

    wait_for(settled_on_nodes, timeout_s=60, what="agent running on nodes")
    assert len(replicas(server, name)) == 1 and deployments(cluster, name) == []
    said: list[tuple[str, str]] = []  # (status.runtime, Ready's reason) as seen on the way

    def seen() -> None:
        status = status_of(server, name)
        ready: dict[str, Any] = next(
            (c for c in status.get("conditions", []) if c["type"] == "Ready"), {}
        )
        step = (str(status.get("runtime")), str(ready.get("reason")))
        if not said or said[-1] != step:
            said.append(step)

    apply(server, tenant(name, f"s-{mark}", mark, runtime=ON_CLUSTER))

    def settled_on_cluster() -> bool:
        seen()
        status = status_of(server, name)
        components = status.get("components", {})
        return (
            status.get("runtime") == f"kubernetes/{CLUSTER}"
            and components.get("web", {}).get("ready") == 1
            and "runs a process" in " ".join(components.get("agent", {}).get("problems", []))
        )

    wait_for(settled_on_cluster, timeout_s=60, what="web running on the cluster")
    # While the nodes runtime removed its replica, status said so, naming it.
    assert ("nodes", "MovingRuntime") in said, said
    assert replicas(server, name) == []  # the nodes runtime removed its replica first
    assert [d["metadata"]["name"] for d in deployments(cluster, name)] == ["web"]
    degraded = conditions(server, name)["Degraded"]
    assert degraded["status"] == "True" and "agent" in degraded["message"]

    said.clear()
    apply(server, tenant(name, f"s-{mark}", mark, runtime="nodes"))

    def back_on_nodes() -> bool:
        seen()
        return settled_on_nodes()

    wait_for(back_on_nodes, timeout_s=60, what="agent running on nodes again")
    assert (f"kubernetes/{CLUSTER}", "MovingRuntime") in said, said
    wait_for(lambda: gone_from_cluster(cluster, name), timeout_s=60, what="cluster objects removed")
    assert len(replicas(server, name)) == 1


# --- a crash-looping release on the cluster --------------------------------------------


def release(version: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Release",
        "metadata": {"name": f"agent-{version}"},
        "spec": {
            "component": "agent",
            "version": version,
            "git": {"tag": f"agent/v{version}", "commit": "0a1b2c3d"},
            "artifact": {
                "image": {
                    "registry": "registry.example.com",
                    "repository": "k8s/agent",
                    "tag": version,
                }
            },
        },
    }


def release_stack(name: str, version: str) -> dict[str, Any]:
    component = {
        "name": "agent",
        "release": f"agent@{version}",
        "ports": [{"name": "http", "port": 8080}],
        "restart": {"crash_loop_after": 3},
        "rollout": {"max_parallel_tenants": 1, "progress_deadline_s": 120},
    }
    return stack(name, component)


def test_a_crash_looping_release_is_rolled_back_and_its_wave_stopped(
    server: ServerProcess, cluster: FakeCluster
) -> None:
    suffix = uuid.uuid4().hex[:6]
    names = [f"w{i}-{suffix}" for i in range(3)]
    stack_name = f"rel-{suffix}"
    apply(
        server,
        org("acme"),
        release("1.0.0"),
        release("1.1.0"),
        release_stack(stack_name, "1.0.0"),
        *(tenant(n, stack_name, runtime=ON_CLUSTER) for n in names),
    )
    wait_for(lambda: all(is_ready(server, n) for n in names), timeout_s=90, what="all Ready")

    def images(name: str) -> str:
        found = deployments(cluster, name)
        return found[0]["spec"]["template"]["spec"]["containers"][0]["image"] if found else ""

    assert {images(n) for n in names} == {"registry.example.com/k8s/agent:1.0.0"}
    cluster.crash("registry.example.com/k8s/agent:1.1.0")
    apply(server, release_stack(stack_name, "1.1.0"))

    def settled() -> list[dict[str, Any]] | None:
        entries = [status_of(server, n).get("rollouts", {}).get("agent", {}) for n in names]
        failed = [e for e in entries if e.get("state") == "failed" and "rolledBackTo" in e]
        held = [e for e in entries if e.get("held")]
        back = all(images(n).endswith(":1.0.0") for n in names)
        if len(failed) == 1 and len(held) == len(names) - 1 and back:
            return entries
        return None

    def seen() -> str:
        return repr([(status_of(server, n), images(n)) for n in names])

    entries = wait_for(settled, timeout_s=120, what=seen)
    [failed] = [n for n, e in zip(names, entries, strict=True) if e.get("state") == "failed"]
    degraded = conditions(server, failed)["Degraded"]
    assert degraded["status"] == "True"
    assert "CrashLoopBackOff" in degraded["message"] and "rolled back" in degraded["message"]
    for name in set(names) - {failed}:
        assert (
            "agent@1.1.0 failed in tenant" in status_of(server, name)["rollouts"]["agent"]["held"]
        )
        assert images(name).endswith(":1.0.0")  # never changed


# --- a Cluster that cannot be reached --------------------------------------------------


def test_a_cluster_that_cannot_be_reached_is_said_in_the_tenants_condition(
    server: ServerProcess, cluster: FakeCluster
) -> None:
    name, mark = fresh("down")
    bad, worse = f"down-{mark}", f"junk-{mark}"
    nowhere = cluster.kubeconfig().replace(cluster.url, f"http://127.0.0.1:{free_port()}")
    apply(
        server,
        org("acme"),
        *cluster_documents(bad, nowhere),
        *cluster_documents(worse, "clusters: [oops"),
        stack(f"s-{mark}", image_agent()),
        tenant(name, f"s-{mark}", runtime={"kubernetes": {"cluster": bad}}),
        tenant(f"{name}-2", f"s-{mark}", runtime={"kubernetes": {"cluster": worse}}),
        tenant(f"{name}-3", f"s-{mark}", runtime={"kubernetes": {"cluster": "absent"}}),
        tenant(f"{name}-ok", f"s-{mark}", runtime=ON_CLUSTER),
    )

    def said(tenant_name: str, reason: str) -> dict[str, Any] | None:
        found = conditions(server, tenant_name).get("Ready")
        return found if found and found["reason"] == reason else None

    down = wait_for(lambda: said(name, "ClusterUnreachable"), timeout_s=60, what="unreachable")
    assert f"cluster {bad!r}" in down["message"]
    junk = wait_for(lambda: said(f"{name}-2", "ClusterConfigInvalid"), timeout_s=60, what="junk")
    assert f"cluster {worse!r}" in junk["message"] and "not YAML" in junk["message"]
    absent = wait_for(lambda: said(f"{name}-3", "ClusterNotFound"), timeout_s=60, what="absent")
    assert "'absent'" in absent["message"]
    assert conditions(server, name)["Degraded"]["status"] == "True"
    # Nothing else disturbed: a tenant on the reachable cluster is Ready.
    wait_for(lambda: is_ready(server, f"{name}-ok"), timeout_s=60, what="the other tenant Ready")


# --- requests per apply ----------------------------------------------------------------


def test_a_tenant_apply_takes_at_most_one_request_per_object_plus_one(
    server: ServerProcess, cluster: FakeCluster
) -> None:
    name, mark = fresh("rq")
    seed = {"name": "seed", "type": "job", "image": f"{IMAGE}:seed"}
    before = len(cluster.requests_by_runtime())
    apply(
        server,
        org("acme"),
        stack(f"s-{mark}", seed, image_agent(depends_on=["seed"]), image_agent("web")),
        tenant(name, f"s-{mark}", runtime=ON_CLUSTER),
    )
    wait_for(lambda: is_ready(server, name), timeout_s=60, what="tenant Ready")
    ns = naming.namespace_name(name)
    made = [r for r in cluster.requests_by_runtime()[before:] if ns in r[1]]
    objects = sum(
        len(cluster.live(plural, ns))
        for plural in (
            "v1/configmaps", "v1/services", "v1/persistentvolumeclaims",
            "networking.k8s.io/v1/networkpolicies", "apps/v1/deployments", "batch/v1/jobs",
        )
    ) + 1  # fmt: skip  # the Namespace
    assert objects == 9  # namespace, parent, claim, policy, 2 services, 2 deployments, job
    assert len(made) <= objects + 1, made


# --- names Kubernetes would refuse ------------------------------------------------------


def test_a_name_kubernetes_refuses_is_refused_at_apply_for_a_tenant_on_a_cluster(
    server: ServerProcess, cluster: FakeCluster
) -> None:
    name, mark = fresh("nm")
    long_port: dict[str, Any] = {"name": "agent", "image": f"{IMAGE}:1.0.0"}
    long_port["ports"] = [{"name": "metrics-exporter-port", "port": 9100}]
    documents = [stack(f"s-{mark}", long_port), tenant(name, f"s-{mark}", runtime=ON_CLUSTER)]
    with server.client() as http:
        refused = http.post("/api/v1/apply", json={"documents": documents})
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert error["path"] == "spec.components[0].ports[0].name" and error["document"] == 0
        assert "'metrics-exporter-port' cannot name a Kubernetes container port" in error["message"]
        assert f"cluster {CLUSTER!r}" in error["message"]
        assert http.get(f"/api/v1/tenants/{name}").status_code == 404  # nothing written

        # On nodes the same name is fine: Kubernetes' rules apply where it runs.
        documents[1] = tenant(name, f"s-{mark}", runtime="nodes")
        accepted = http.post("/api/v1/apply", json={"documents": documents})
        assert accepted.status_code == 200, accepted.text
        # And moving that tenant to the cluster is refused at its Tenant, naming the Stack.
        moving = http.post(
            "/api/v1/apply", json={"documents": [tenant(name, f"s-{mark}", runtime=ON_CLUSTER)]}
        )
        assert moving.status_code == 422, moving.text
        [error] = moving.json()["errors"]
        assert error["path"] == "spec.stack"
        assert f"Stack/s-{mark}: spec.components[0].ports[0].name" in error["message"]


# --- seed jobs -------------------------------------------------------------------------


def test_seed_jobs_are_applied_in_depends_on_order(
    server: ServerProcess, cluster: FakeCluster
) -> None:
    name, mark = fresh("seq")
    ns = naming.namespace_name(name)
    first, second = f"migrate-{mark}", f"seed-{mark}"

    def job(component: str, **extra: Any) -> dict[str, Any]:
        return {"name": component, "type": "job", "image": f"{IMAGE}:1.0.0", **extra}

    def jobs() -> set[str]:
        return {
            j["metadata"]["labels"]["app.kubernetes.io/name"]
            for j in cluster.live("batch/v1/jobs", ns)
        }

    def components() -> dict[str, Any]:
        found: dict[str, Any] = status_of(server, name).get("components", {})
        return found

    cluster.hold(first)  # its Job runs until let go
    try:
        apply(
            server,
            org("acme"),
            stack(f"s-{mark}", job(first), job(second, depends_on=[first])),
            tenant(name, f"s-{mark}", runtime=ON_CLUSTER),
        )
        wait_for(
            lambda: components().get(second, {}).get("waitingFor") == [first],
            timeout_s=60,
            what=f"{second} waiting for {first}",
        )
        # The step that said so applied the first Job and held the second back.
        assert jobs() == {first}
    finally:
        cluster.hold(first, held=False)
    wait_for(lambda: jobs() == {first, second}, timeout_s=60, what="the second Job applied")
    wait_for(
        lambda: all(components().get(c, {}).get("ready") == 1 for c in (first, second)),
        timeout_s=60,
        what="both Jobs complete",
    )
    assert "waitingFor" not in components()[second]


# --- schedules -------------------------------------------------------------------------


def test_a_schedule_of_a_tenant_on_a_cluster_is_its_cronjob(
    server: ServerProcess, cluster: FakeCluster
) -> None:
    name, mark = fresh("cron")
    ns = naming.namespace_name(name)
    report = {"name": "report", "type": "job", "image": f"{IMAGE}:1.0.0"}
    nightly = {"name": "nightly", "component": "report", "cron": "0 3 * * *"}
    apply(
        server,
        org("acme"),
        stack(f"s-{mark}", report),
        tenant(name, f"s-{mark}", runtime=ON_CLUSTER, schedules=[nightly]),
    )
    [cronjob] = wait_for(
        lambda: cluster.live("batch/v1/cronjobs", ns), timeout_s=60, what="the CronJob"
    )
    assert cronjob["metadata"]["name"] == "nightly"
    assert (cronjob["spec"]["schedule"], cronjob["spec"]["timeZone"]) == ("0 3 * * *", "UTC")

    def next_time() -> str | None:
        with server.client() as http:
            items = http.get("/api/v1/scheduled-jobs").json()["items"]
        found = [i for i in items if i.get("tenant") == name]
        return found[0]["status"].get("nextScheduleTime") if found else None

    next_at = wait_for(next_time, timeout_s=60, what="the schedule's next fire time")
    assert next_at.endswith("T03:00:00Z")


# --- agent calls -----------------------------------------------------------------------


@pytest.fixture
def agent_process(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real agent (tests/integration/agent_app.py) standing in for a Service's pods:
    its URL and the directory it records its calls in."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "AGENT_RECORD_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(AGENT_APP)], env=env)
    try:
        wait_for(lambda: http_ok(port), timeout_s=30, what="the agent up")
        yield f"http://127.0.0.1:{port}", tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_ended(server: ServerProcess, run_id: str, *states: str) -> dict[str, Any] | None:
    with server.client() as http:
        run: dict[str, Any] = http.get(f"/api/v1/runs/{run_id}").json()
    return run if run["state"] in states else None


def test_an_agent_run_for_a_tenant_on_a_cluster_calls_its_service_through_the_proxy(
    server: ServerProcess, cluster: FakeCluster, agent_process: tuple[str, Path]
) -> None:
    url, record = agent_process
    name, mark = fresh("ag")
    ns = naming.namespace_name(name)
    apply(
        server,
        org("acme"),
        stack(f"s-{mark}", image_agent()),
        tenant(name, f"s-{mark}", runtime=ON_CLUSTER),
    )
    wait_for(lambda: is_ready(server, name), timeout_s=60, what="tenant Ready")

    # No pod answers yet (the API server's 503, no endpoints): the attempt fails, retried.
    with server.client() as http:
        started = http.post("/api/v1/agents/run", json={"tenant": name, "input": {"q": 1}})
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
    failed = wait_for(
        lambda: (
            (run := run_ended(server, run_id, "queued", "failed", "dead"))
            and run["attempts"] >= 1
            and run
        ),
        timeout_s=60,
        what="a first attempt",
    )
    assert failed["statusCode"] == 503 and "no endpoints available" in failed["answer"]

    cluster.proxy(ns, "agent", url)
    run = wait_for(
        lambda: run_ended(server, run_id, "succeeded"), timeout_s=60, what="the run to succeed"
    )
    assert run["statusCode"] == 200 and run["error"] is None
    said = json.loads(run["answer"])
    assert said["tenant"] == name and said["input"] == {"q": 1}
    assert said["whoami"]["role"] == "tenant" and said["whoami"]["tenant"] == name
    # Through the API server's service proxy, to the Service's first port, as on nodes.
    [call] = [c for c in cluster.proxied() if c["namespace"] == ns]
    assert (call["service"], call["port"], call["path"]) == ("agent", "8080", "/run")
    assert call["headers"]["Idempotency-Key"] == run_id
    assert "Authorization" not in call["headers"]  # the emulator's kubeconfig has no user
    calls = [json.loads(line) for line in (record / "calls.log").read_text().splitlines()]
    assert [c["e"] for c in calls if c["run"] == run_id] == ["start", "done", "end"]


# --- the Secrets a tenant uses ---------------------------------------------------------


def test_the_secrets_a_tenant_uses_are_written_to_its_namespace_and_referenced(
    server: ServerProcess, cluster: FakeCluster
) -> None:
    name, mark = fresh("sec")
    value = f"s3cr3t-{mark}"
    apply(
        server,
        org("acme"),
        {
            **secret(f"db-{mark}", {"PASSWORD": value}),
            "spec": {"tenant": name, "data": {"PASSWORD": value}},
        },
        stack(f"s-{mark}", image_agent()),
        tenant(
            name, f"s-{mark}", runtime=ON_CLUSTER, secrets=[{"name": f"db-{mark}", "prefix": "DB_"}]
        ),
    )
    wait_for(lambda: is_ready(server, name), timeout_s=60, what="tenant Ready")
    ns = naming.namespace_name(name)
    [written] = cluster.live("v1/secrets", ns)
    assert written["metadata"]["name"] == f"db-{mark}"
    assert written["stringData"] == {"PASSWORD": value}
    assert written["metadata"]["labels"]["armillary.dev/tenant"] == name
    container = deployments(cluster, name)[0]["spec"]["template"]["spec"]["containers"][0]
    refs = {e["name"]: e.get("valueFrom") for e in container["env"]}
    assert refs["DB_PASSWORD"] == {"secretKeyRef": {"name": f"db-{mark}", "key": "PASSWORD"}}
    [parent] = [
        c
        for c in cluster.live("v1/configmaps", ns)
        if c["metadata"]["name"] == "armillary-applyset"
    ]
    assert "Secret" in parent["metadata"]["annotations"][
        "applyset.kubernetes.io/contains-group-kinds"
    ].split(",")
    with server.client() as http:
        assert value not in http.get(f"/api/v1/tenants/{name}").text

    # No longer used: pruned with the rest of what is no longer rendered.
    apply(server, tenant(name, f"s-{mark}", runtime=ON_CLUSTER))
    wait_for(lambda: cluster.live("v1/secrets", ns) == [], timeout_s=60, what="the Secret pruned")
