"""Provisioning runs against a real server and node, on SQLite and Postgres: step
timelines, idempotency keys, the per-tenant lock, rollback, recovery after kill -9,
deprovisioning and bad requests."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from tests.support.api import apply, ready, replicas
from tests.support.cli import invoke
from tests.support.nodes import QUICKSTART, NodeProcess
from tests.support.processes import processes_marked
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "crash_loop_after": 1}


@pytest.fixture(scope="module")
def node(server: ServerProcess, node: NodeProcess) -> NodeProcess:
    """The shared node, with the quickstart's stacks applied."""
    yaml = YAML(typ="safe")
    documents = [d for d in yaml.load_all((QUICKSTART / "stack.yaml").read_text())]
    apply(server, *documents)
    return node


def request(tenant: str, *, mark: str, stack: str = "agent-stack", **extra: Any) -> dict[str, Any]:
    return {
        "org": f"org-{mark}",
        "tenant": tenant,
        "stack": stack,
        "env": {"ARMILLARY_TEST_MARK": mark},
        **extra,
    }


def submit(server: ServerProcess, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    with server.client() as http:
        response = http.post("/api/v1/provision/tenants", json=body)
    return response.status_code, response.json()


def run_of(server: ServerProcess, run_id: str) -> dict[str, Any]:
    with server.client() as http:
        return http.get(f"/api/v1/provision/runs/{run_id}").json()


def finished(server: ServerProcess, run_id: str, timeout_s: float = 90) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (r := run_of(server, run_id))["state"] in ("succeeded", "failed", "rolled-back") and r
        ),
        timeout_s=timeout_s,
        every_s=0.1,
        what=f"run {run_id} to end",
    )


def moment(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_two_tenants_provisioned_with_complete_timelines(
    server: ServerProcess, node: NodeProcess
) -> None:
    mark = uuid.uuid4().hex[:8]
    runs = []
    for tenant in (f"one-{mark}", f"two-{mark}"):
        code, run = submit(
            server,
            request(
                tenant,
                mark=mark,
                routing={"github": [f"acme/{tenant}"]},
                schedules=[
                    {
                        "name": "nightly",
                        "component": "seed",
                        "cron": "0 3 * * *",
                        "time_zone": "Europe/Paris",
                    }
                ],
            ),
        )
        assert code == 202
        assert [s["state"] for s in run["steps"]] == ["pending"] * 8
        runs.append(run)
    for run in runs:
        done = finished(server, run["id"])
        assert done["state"] == "succeeded", (done["error"], done["steps"])
        names = [s["name"] for s in done["steps"]]
        assert names == [
            "ensure-org",
            "ensure-tenant",
            "write-routing",
            "issue-tenant-token",
            "deploy-and-wait-healthy",
            "run-seed-jobs",
            "create-schedules",
            "verify",
        ]
        assert all(s["state"] == "succeeded" for s in done["steps"])
        times = [(moment(s["startedAt"]), moment(s["finishedAt"])) for s in done["steps"]]
        assert all(a <= b for a, b in times)
        assert all(times[i][1] <= times[i + 1][0] for i in range(len(times) - 1))
        assert ready(server, done["tenant"])
        assert done["steps"][5]["detail"] == {"jobs": {"seed": {"exit_code": 0}}}
        assert set(done["steps"][3]["detail"]) == {"token_id"}  # the key itself never shows
        with server.client() as http:
            tenant = http.get(f"/api/v1/tenants/{done['tenant']}").json()
            assert tenant["spec"]["routing"] == {"github": [f"acme/{done['tenant']}"]}
            schedule = http.get(f"/api/v1/schedules/{done['tenant']}-nightly").json()
            assert schedule["spec"]["tenant"] == done["tenant"]
    assert len(processes_marked(mark)) == 6  # agent, reader, mission-control × 2
    keys = {}
    for run in runs:
        with server.client() as http:
            issued = http.post(f"/api/v1/provision/runs/{run['id']}/token")
            assert issued.status_code == 200, issued.text
            keys[run["tenant"]] = issued.json()["token"]
            again = http.post(f"/api/v1/provision/runs/{run['id']}/token")
            assert again.status_code == 410 and "already collected" in again.text
    first, second = (r["tenant"] for r in runs)
    as_first = {"Authorization": f"Bearer {keys[first]}"}
    with httpx.Client(base_url=server.url, headers=as_first) as http:
        assert http.get(f"/api/v1/tenants/{first}").status_code == 200
        assert http.get(f"/api/v1/tenants/{second}").status_code == 404
        assert http.get("/api/v1/tenants").status_code == 403
    for run in runs:
        with server.client() as http:
            response = http.delete(f"/api/v1/provision/tenants/{run['tenant']}")
        assert response.status_code == 202
        gone = finished(server, response.json()["id"])
        assert gone["state"] == "succeeded", gone
        assert [s["name"] for s in gone["steps"]] == [
            "delete-schedules",
            "delete-tenant",
            "wait-stopped",
            "revoke-tokens",
        ]
        status = httpx.get(
            f"{server.url}/api/v1/auth/whoami",
            headers={"Authorization": f"Bearer {keys[run['tenant']]}"},
        ).status_code
        assert status == 401  # deprovisioned: its key is refused
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="every process gone")
    with server.client() as http:
        assert http.get(f"/api/v1/schedules/one-{mark}-nightly").status_code == 404


def test_one_idempotency_key_makes_one_run_however_many_calls(
    server: ServerProcess, node: NodeProcess
) -> None:
    mark = uuid.uuid4().hex[:8]
    body = request(f"idem-{mark}", mark=mark, idempotency_key=f"key-{mark}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: submit(server, body), range(20)))
    ids = {run["id"] for _, run in answers}
    assert len(ids) == 1
    assert sorted(code for code, _ in answers).count(202) == 1
    with server.client() as http:
        listed = http.get("/api/v1/provision/runs", params={"tenant": f"idem-{mark}"}).json()[
            "items"
        ]
    assert len(listed) == 1
    assert finished(server, ids.pop())["state"] == "succeeded"
    code, again = submit(server, body)  # also after it finished: the same run
    assert (code, again["id"]) == (200, listed[0]["id"])
    code, problem = submit(server, {**body, "env": {"OTHER": "request"}})
    assert code == 409 and "different request" in problem["detail"]
    _deprovision(server, f"idem-{mark}", mark)


def test_runs_for_one_tenant_never_overlap(server: ServerProcess, node: NodeProcess) -> None:
    mark = uuid.uuid4().hex[:8]
    tenant = f"lock-{mark}"
    bodies = [request(tenant, mark=mark, idempotency_key=f"{mark}-{i}") for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        started = [run for _, run in pool.map(lambda b: submit(server, b), bodies)]
    done = [finished(server, run["id"], timeout_s=180) for run in started]
    assert all(run["state"] == "succeeded" for run in done), [r["error"] for r in done]
    spans = sorted(
        (moment(r["steps"][0]["startedAt"]), moment(r["steps"][-1]["finishedAt"])) for r in done
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, "two runs for one tenant interleaved"
    _deprovision(server, tenant, mark)


def test_a_failing_seed_job_rolls_everything_back(server: ServerProcess, node: NodeProcess) -> None:
    mark = uuid.uuid4().hex[:8]
    stack = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Stack",
        "metadata": {"name": f"bad-{mark}"},
        "spec": {
            "components": [
                {
                    "name": "seed",
                    "type": "job",
                    "command": ["sh", "-c", "echo no database; exit 1"],
                    "restart": FAST,
                },
                {"name": "agent", "command": ["sleep", "1000"], "depends_on": ["seed"]},
            ]
        },
    }
    apply(server, stack)
    code, run = submit(server, request(f"fail-{mark}", mark=mark, stack=f"bad-{mark}"))
    assert code == 202
    done = finished(server, run["id"])
    assert done["state"] == "rolled-back"
    by_name = {s["name"]: s for s in done["steps"]}
    assert by_name["deploy-and-wait-healthy"]["state"] == "failed"
    assert "job seed failed (exit code 1)" in by_name["deploy-and-wait-healthy"]["error"]
    assert [
        by_name[n]["state"]
        for n in ("ensure-org", "ensure-tenant", "write-routing", "issue-tenant-token")
    ] == ["rolled-back"] * 4
    assert [by_name[n]["state"] for n in ("run-seed-jobs", "create-schedules", "verify")] == [
        "skipped"
    ] * 3
    assert "undone: issue-tenant-token, write-routing, ensure-tenant, ensure-org" in done["error"]
    with server.client() as http:
        keys = [
            k for k in http.get("/api/v1/tokens").json()["items"] if run["id"] in k["description"]
        ]
        assert len(keys) == 1 and keys[0]["revokedAt"] is not None  # the issued key: revoked
        assert http.post(f"/api/v1/provision/runs/{run['id']}/token").status_code == 409
        assert http.get(f"/api/v1/tenants/fail-{mark}").status_code == 404
        assert http.get(f"/api/v1/orgs/org-{mark}").status_code == 404
    wait_for(lambda: not replicas(server, f"fail-{mark}"), what="allocations removed")
    assert processes_marked(mark) == []


def step_of(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in run["steps"] if s["name"] == name)


def test_a_run_interrupted_by_kill_9_is_rolled_back_on_restart(
    server: ServerProcess, node: NodeProcess
) -> None:
    mark = uuid.uuid4().hex[:8]
    stack = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Stack",
        "metadata": {"name": f"slow-{mark}"},
        "spec": {
            "components": [
                {
                    "name": "never",
                    "command": ["sleep", "1000"],
                    "health_check": {"exec": {"command": ["false"]}, "interval_s": 0.2},
                }
            ]
        },
    }
    apply(server, stack)
    _, run = submit(
        server, request(f"crash-{mark}", mark=mark, stack=f"slow-{mark}", timeout_s=600)
    )
    wait_for(
        lambda: step_of(run_of(server, run["id"]), "deploy-and-wait-healthy")["state"] == "running",
        what="waiting for health",
    )
    server.kill()
    server.start()
    wait_for(node.connected, timeout_s=30, what="node back")
    done = finished(server, run["id"])
    assert done["state"] == "rolled-back"
    assert "interrupted by a server restart" in done["error"]
    with server.client() as http:
        assert http.get(f"/api/v1/tenants/crash-{mark}").status_code == 404
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="nothing left running")


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"stack": "no-such-stack"}, "stack", "does not exist"),
        ({"tenant": "Bad_Name"}, "tenant.metadata.name", "DNS-1123"),
        (
            {"schedules": [{"name": "x", "component": "seed", "cron": "61 * * * *"}]},
            "schedules[0].spec.cron",
            "cron",
        ),
        (
            {
                "schedules": [
                    {"name": "x", "component": "seed", "cron": "@daily", "time_zone": "Mars/Base"}
                ]
            },
            "schedules[0].spec.time_zone",
            "IANA",
        ),
        (
            {"overrides": {"agent": {"replicas": -1}}},
            "tenant.spec.overrides.agent.replicas",
            "greater",
        ),
        ({"schedules": [{"component": "seed", "cron": "@daily"}]}, "schedules[0].name", "required"),
    ],
)
def test_bad_requests_are_refused_and_record_nothing(
    server: ServerProcess, node: NodeProcess, change: dict[str, Any], path: str, words: str
) -> None:
    mark = uuid.uuid4().hex[:8]
    body = {**request(f"bad-{mark}", mark=mark), **change}
    code, problem = submit(server, body)
    assert code == 422, problem
    assert any(e["path"] == path and words in e["message"] for e in problem["errors"]), problem
    with server.client() as http:
        every = http.get("/api/v1/provision/runs").json()["items"]
        assert [r for r in every if r["tenant"] == body["tenant"]] == []
        assert http.get(f"/api/v1/orgs/org-{mark}").status_code == 404


def test_cli_provisions_and_shows_the_timeline(
    server: ServerProcess, node: NodeProcess, tmp_path: Path
) -> None:
    mark = uuid.uuid4().hex[:8]
    extra = tmp_path / "request.yaml"
    extra.write_text(json.dumps({"routing": {"slack": [f"C{mark}"]}}))
    code, out, err = invoke(
        server,
        "provision",
        "tenant",
        f"cli-{mark}",
        "--org",
        f"org-{mark}",
        "--stack",
        "agent-stack",
        "--env",
        f"ARMILLARY_TEST_MARK={mark}",
        "--replicas",
        "agent=2",
        "-f",
        str(extra),
    )
    assert code == 0, out + err
    assert "succeeded" in out and "verify" in out
    assert out.strip().splitlines()[-1].startswith("arm_")  # the key, printed once
    assert "shown once" in err
    assert len(processes_marked(mark)) == 4
    _, runs, _ = invoke(server, "provision", "runs", "--tenant", f"cli-{mark}")
    run_id = runs.splitlines()[1].split()[0]
    _, status, _ = invoke(server, "provision", "status", run_id)
    assert "ensure-org" in status and "✓" in status
    code, out, _ = invoke(server, "deprovision", f"cli-{mark}")
    assert code == 0, out
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="every process gone")


def _deprovision(server: ServerProcess, tenant: str, mark: str) -> None:
    with server.client() as http:
        response = http.delete(f"/api/v1/provision/tenants/{tenant}")
    assert finished(server, response.json()["id"])["state"] == "succeeded"
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="every process gone")


def test_a_runs_tenant_key_is_refused_once_its_tenant_is_deleted_and_created_again(
    server: ServerProcess, node: NodeProcess
) -> None:
    mark = uuid.uuid4().hex[:8]
    tenant = f"again-{mark}"
    code, run = submit(server, request(tenant, mark=mark))
    assert code == 202, run
    done = finished(server, run["id"])
    assert done["state"] == "succeeded", (done["error"], done["steps"])
    with server.client() as http:
        key = http.post(f"/api/v1/provision/runs/{run['id']}/token").json()["token"]
        first = http.get(f"/api/v1/tenants/{tenant}").json()
    as_tenant = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=as_tenant) as http:
        assert http.get(f"/api/v1/tenants/{tenant}").status_code == 200
    # Deleted without deprovisioning (nothing revokes its keys), then created again.
    with server.client() as http:
        assert http.delete(f"/api/v1/tenants/{tenant}").status_code == 200
    again = {k: first[k] for k in ("apiVersion", "kind", "spec")}
    apply(server, {**again, "metadata": {"name": tenant}})
    try:
        with server.client() as http:
            second = http.get(f"/api/v1/tenants/{tenant}").json()
        assert second["metadata"]["uid"] != first["metadata"]["uid"]
        with httpx.Client(base_url=server.url, headers=as_tenant) as http:
            for path in (f"/api/v1/tenants/{tenant}", "/api/v1/auth/whoami"):
                refused = http.get(path)
                assert refused.status_code == 401, (path, refused.text)
                assert "no longer exists" in refused.json()["detail"]
    finally:  # what the run made, removed directly: the test is about the key, not deprovision
        with server.client() as http:
            for schedule in http.get("/api/v1/schedules").json()["items"]:
                if schedule["tenant"] == tenant and schedule["source"] == "Schedule":
                    assert http.delete(f"/api/v1/schedules/{schedule['name']}").status_code == 200
            http.delete(f"/api/v1/tenants/{tenant}")
            assert http.get(f"/api/v1/schedules/{tenant}-nightly").status_code == 404
        wait_for(lambda: not processes_marked(mark), timeout_s=60, what="every process gone")
