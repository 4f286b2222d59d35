"""Reading and writing a test server's state over its HTTP API, as a user would."""

from __future__ import annotations

from typing import Any

from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for


def apply(server: ServerProcess, *documents: dict[str, Any]) -> None:
    with server.client() as http:
        response = http.post("/api/v1/apply", json={"documents": list(documents)})
    assert response.status_code == 200, response.text


def delete(server: ServerProcess, plural: str, name: str) -> None:
    with server.client() as http:
        response = http.delete(f"/api/v1/{plural}/{name}")
    assert response.status_code == 200, response.text


def replicas(
    server: ServerProcess, tenant: str, component: str | None = None
) -> list[dict[str, Any]]:
    params = {"tenant": tenant, **({"component": component} if component else {})}
    with server.client() as http:
        items: list[dict[str, Any]] = http.get("/api/v1/replicas", params=params).json()["items"]
    return items


def condition(server: ServerProcess, tenant: str, kind: str = "Ready") -> dict[str, Any] | None:
    with server.client() as http:
        response = http.get(f"/api/v1/tenants/{tenant}")
    if response.status_code != 200:
        return None
    for item in response.json().get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return None


def ready(server: ServerProcess, tenant: str) -> bool:
    found = condition(server, tenant)
    return bool(found and found["status"] == "True")


def provision(server: ServerProcess, *, org: str, tenant: str, stack: str) -> str:
    """Provision `tenant` (with a nightly schedule of its `job` component) and wait
    until the run succeeded; the run's id."""
    body = {
        "org": org,
        "tenant": tenant,
        "stack": stack,
        "schedules": [{"name": "nightly", "component": "job", "cron": "0 3 * * *"}],
    }
    with server.client() as http:
        run_id = str(http.post("/api/v1/provision/tenants", json=body).json()["id"])
        wait_for(
            lambda: http.get(f"/api/v1/provision/runs/{run_id}").json()["state"] == "succeeded",
            timeout_s=60,
            what=f"tenant {tenant} provisioned",
        )
    return run_id
