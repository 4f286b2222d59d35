"""The API's envelope: authentication, redirects, OpenAPI, health, concurrent writers,
and durability across kill -9."""

from __future__ import annotations

import concurrent.futures
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.documents import org
from tests.support.servers import ServerProcess


def test_health_needs_no_token_and_the_api_does(server: ServerProcess) -> None:
    with server.client(token=None) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json() == {"status": "ok"}
        response = http.get("/api/v1/tenants")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"
    for header in (
        "Bearer arm_nothere_xyz",
        "Bearer",
        "Basic dXNlcjpwdw==",
        "arm_token",
        "Bearer " + "a" * 5000,
    ):
        with server.client(token=None) as http:
            response = http.get("/api/v1/tenants", headers={"Authorization": header})
            assert response.status_code == 401, header


def test_unversioned_api_redirects(server: ServerProcess) -> None:
    with server.client() as http:
        response = http.get("/api/tenants?selector=a=b")
        assert response.status_code == 301
        assert response.headers["location"] == "/api/v1/tenants?selector=a=b"
        response = http.post("/api/apply", json={"documents": []})
        assert response.status_code == 308
        assert response.headers["location"] == "/api/v1/apply"
        assert http.get("/api/v1/nothing-here").status_code == 404


def test_openapi_lists_every_kind(server: ServerProcess) -> None:
    with server.client(token=None) as http:
        spec = http.get("/api/v1/openapi.json").json()
    for plural in ("orgs", "stacks", "releases", "tenants", "schedules", "webhooksources"):
        assert f"/api/v1/{plural}" in spec["paths"]
        assert {"get", "put", "delete"} <= set(spec["paths"][f"/api/v1/{plural}/{{name}}"])
    assert "/api/v1/apply" in spec["paths"] and "/api/v1/plan" in spec["paths"]


def test_put_creates_then_reports_unchanged(server: ServerProcess) -> None:
    name = f"o-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        first = http.put(f"/api/v1/orgs/{name}", json=org(name))
        assert first.status_code == 201 and first.json()["result"] == "created"
        second = http.put(f"/api/v1/orgs/{name}", json=org(name))
        assert second.status_code == 200 and second.json()["result"] == "unchanged"
        stale = http.delete(f"/api/v1/orgs/{name}", params={"resourceVersion": "7"})
        assert stale.status_code == 409
        gone = http.delete(f"/api/v1/orgs/{name}", params={"resourceVersion": "1"})
        assert gone.status_code == 200


def test_concurrent_conditional_writes_let_exactly_one_win(server: ServerProcess) -> None:
    name = f"o-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        http.put(f"/api/v1/orgs/{name}", json=org(name))

    def write(i: int) -> int:
        doc = org(name, description=f"writer {i}")
        doc["metadata"]["resourceVersion"] = "1"
        with server.client() as http:
            return http.put(f"/api/v1/orgs/{name}", json=doc).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(write, range(10)))
    assert sorted(codes) == [200] + [409] * 9
    with server.client() as http:
        meta = http.get(f"/api/v1/orgs/{name}").json()["metadata"]
    assert (meta["generation"], meta["resourceVersion"]) == (2, "2")


def test_acknowledged_apply_survives_kill_9(
    server: ServerProcess, database_url: str | None, tmp_path: Path
) -> None:
    """A 2xx for apply means committed: kill -9 the instant after, restart, it is there."""
    home = tmp_path / "home"
    home.mkdir()
    if database_url:  # the module's server already made the admin token in this database
        (home / "context.json").write_text(json.dumps({"token": server.token}))
    proc = ServerProcess(home=home, database_url=database_url)
    proc.start()
    names = [f"o-{uuid.uuid4().hex[:8]}" for _ in range(20)]
    try:
        token = proc.token
        with proc.client() as http:
            for name in names:
                assert http.put(f"/api/v1/orgs/{name}", json=org(name)).status_code == 201
        proc.kill()
        proc.start()
        assert proc.token == token, "a restart must not mint a new admin token"
        with proc.client() as http:
            stored = {o["metadata"]["name"] for o in http.get("/api/v1/orgs").json()["items"]}
        assert set(names) <= stored
    finally:
        proc.stop()


def test_server_refuses_to_answer_on_unknown_routes_with_problem_json(
    server: ServerProcess,
) -> None:
    response = httpx.get(f"{server.url}/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_wrong_method_is_405(server: ServerProcess) -> None:
    with server.client() as http:
        response = http.patch("/api/v1/orgs/x", json={})
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    # Every method the path answers, though each is a route of its own.
    assert response.headers["allow"] == "DELETE, GET, PUT"


def test_chunked_body_over_the_limit_is_413(server: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for _ in range(10):
            yield b" " * (1024 * 1024)

    with server.client() as http:
        response = http.post(
            "/api/v1/apply", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert http.get("/healthz").status_code == 200


def test_plan_reports_a_stale_resource_version_like_apply(server: ServerProcess) -> None:
    name = f"o-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        http.put(f"/api/v1/orgs/{name}", json=org(name))
        http.put(f"/api/v1/orgs/{name}", json=org(name, description="moved on"))
        stale = org(name, description="mine")
        stale["metadata"]["resourceVersion"] = 1  # an integer is accepted as well
        for route in ("/api/v1/plan", "/api/v1/apply"):
            response = http.post(route, json={"documents": [stale]})
            assert response.status_code == 409, route
            assert "resourceVersion 1" in response.json()["detail"]


def test_release_names_carry_the_version(server: ServerProcess) -> None:
    release = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Release",
        "metadata": {"name": "agent-1.4.0-rc.1"},
        "spec": {
            "component": "agent",
            "version": "1.4.0-rc.1",
            "git": {"tag": "agent/v1.4.0-rc.1", "commit": "0123abcd"},
            "artifact": {"process": {"command": ["python3", "agent.py"]}},
        },
    }
    with server.client() as http:
        response = http.put("/api/v1/releases/agent-1.4.0-rc.1", json=release)
        assert response.status_code == 201, response.text
        assert (
            http.get("/api/v1/releases/agent-1.4.0-rc.1").json()["spec"]["version"] == "1.4.0-rc.1"
        )


def test_a_post_whose_fields_all_have_defaults_takes_no_body(server: ServerProcess) -> None:
    name = f"quiet-{uuid.uuid4().hex[:6]}"
    stack: dict[str, Any] = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"components": [{"name": "web", "command": ["true"]}]},
    }
    tenant: dict[str, Any] = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"org": name, "stack": name},
    }
    with server.client() as http:
        for document in (org(name), stack, tenant):
            path = f"/api/v1/{document['kind'].lower()}s/{name}"
            assert http.put(path, json=document).status_code == 201, path
        minted = http.post(f"/api/v1/tenants/{name}/tokens")  # no body, no content type
        assert minted.status_code == 200, minted.text
        headers = {"Authorization": f"Bearer {minted.json()['token']}"}
        who = httpx.get(f"{server.url}/api/v1/auth/whoami", headers=headers).json()
        assert who["tenant"] == name
        # Taken without a body too: whatever the answer (it depends on how far the tenant
        # controller got: no revision yet, or none before the first), it is about the
        # tenant's history, never about the body.
        undo = http.post(f"/api/v1/tenants/{name}/rollouts/web/undo").json()
        assert undo["status"] in (404, 422), undo
        assert not any(e["path"].startswith("body") for e in undo.get("errors", [])), undo
