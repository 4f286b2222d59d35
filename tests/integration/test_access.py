"""Access control against a real server, on SQLite and Postgres.

The authorization matrix walks the application's route table: every route must have
an entry in `EXPECTED` (so a new route without a rule fails here), and every route is
called as each kind of caller — anonymous, viewer, developer, admin, node key, tenant
token of A, tenant token of B, an expired key, a revoked key — and must be allowed or
refused exactly as the entry says. Tenant A's things are real (a provisioned tenant
with a running replica and a provisioning run), so "allowed" means answered, and
"refused" for a tenant token means 404 (it may not even learn a thing exists).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute

from armillary.api.app import create_app
from armillary.api.routes import dashboard
from armillary.api.security import PUBLIC, SIGNED, Allow
from armillary.config import Settings
from armillary.resources import kinds
from tests.support.api import apply, provision, replicas
from tests.support.cli import invoke
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

SLEEPER = {"name": "agent", "command": ["sleep", "100000"]}
ADMIN_WRITES = {"webhooksources", "secrets", "clusters"}


def _expected() -> dict[tuple[str, str], str]:
    table = {
        ("GET", "/healthz"): "public",
        ("GET", "/readyz"): "public",
        ("GET", "/api/v1/openapi.json"): "public",
        ("GET", "/api/v1/docs"): "public",
        ("GET", "/api/v1/docs/swagger-ui-bundle.js"): "public",
        ("GET", "/api/v1/docs/swagger-ui.css"): "public",
        ("GET", "/api/v1/docs/favicon.png"): "public",
        ("GET", "/docs/oauth2-redirect"): "public",
        ("POST", "/api/v1/auth/login"): "public",
        ("POST", "/api/v1/auth/redeem"): "public",
        ("POST", "/api/v1/auth/links"): "admin",
        ("GET", "/"): "public",
        ("GET", "/ui/{asset}"): "public",
        ("POST", "/api/v1/auth/logout"): "viewer",
        ("GET", "/api/v1/auth/whoami"): "tenant-any",
        ("POST", "/api/v1/plan"): "viewer",
        ("POST", "/api/v1/apply"): "developer",
        ("GET", "/api/v1/nodes"): "viewer",
        ("GET", "/api/v1/doctor"): "viewer",
        ("GET", "/api/v1/retention"): "viewer",
        ("GET", "/api/v1/version"): "viewer",
        ("GET", "/api/v1/servers"): "viewer",
        ("GET", "/metrics"): "viewer",  # Prometheus scrapes with a viewer key
        ("POST", "/api/v1/nodes/{name}/cordon"): "admin",
        ("POST", "/api/v1/nodes/{name}/uncordon"): "admin",
        ("POST", "/api/v1/nodes/{name}/drain"): "admin",
        ("GET", "/api/v1/replicas"): "tenant-query",
        ("GET", "/api/v1/replicas/{replica_id}/logs"): "tenant-own",
        ("POST", "/api/v1/replicas/{replica_id}/exec"): "admin",
        ("POST", "/api/v1/provision/tenants"): "developer",
        ("DELETE", "/api/v1/provision/tenants/{tenant}"): "developer",
        ("GET", "/api/v1/provision/runs"): "tenant-query",
        ("GET", "/api/v1/provision/runs/{run_id}"): "tenant-own",
        ("POST", "/api/v1/provision/runs/{run_id}/token"): "developer",
        ("GET", "/api/v1/tenants/{tenant}/rollouts"): "tenant-own",
        ("POST", "/api/v1/tenants/{tenant}/rollouts/{component}/undo"): "developer",
        ("POST", "/api/v1/tokens"): "admin",
        ("GET", "/api/v1/tokens"): "admin",
        ("POST", "/api/v1/tokens/{token_id}/revoke"): "admin",
        ("POST", "/api/v1/users"): "admin",
        ("GET", "/api/v1/users"): "admin",
        ("DELETE", "/api/v1/users/{name}"): "admin",
        ("POST", "/api/v1/tenants/{tenant}/tokens"): "developer",
        ("POST", "/api/v1/tenants/{tenant}/tokens/revoke"): "developer",
        ("GET", "/api/v1/scheduled-jobs"): "tenant-any",
        ("POST", "/api/v1/schedules/{name}/run"): "developer",
        ("GET", "/api/v1/schedules/{name}/runs"): "tenant-own",
        ("GET", "/api/v1/audit"): "admin",
        ("GET", "/api/v1/secrets/{name}/reveal"): "admin",
        ("GET", "/api/v1/events"): "tenant-query",
        ("POST", "/api/v1/agents/run"): "developer",
        ("GET", "/api/v1/runs"): "tenant-query",
        ("GET", "/api/v1/runs/{run_id}"): "tenant-own",
        ("POST", "/api/v1/runs/{run_id}/retry"): "developer",
        # Authenticated by the sender's signature, not a token: every caller here is
        # refused (401), whatever bearer token it brings.
        ("POST", "/webhooks/{source}"): "signed",
    }
    for kind in kinds.KINDS:
        base = f"/api/v1/{kind.plural}"
        write = "admin" if kind.plural in ADMIN_WRITES else "developer"
        table[("GET", base)] = "viewer"
        table[("GET", f"{base}/{{name}}")] = "tenant-own" if kind.name in {
            "Tenant", "Schedule"
        } else "viewer"  # fmt: skip
        table[("PUT", f"{base}/{{name}}")] = write
        table[("DELETE", f"{base}/{{name}}")] = write
    return table


EXPECTED = _expected()
CALLERS = (
    "anonymous",
    "viewer",
    "developer",
    "admin",
    "node",
    "tenant-a",
    "tenant-b",
    "expired",
    "revoked",
)


def allowed(level: str, caller: str) -> bool:
    if level == "public":
        return True
    if level == "signed":
        return False  # the matrix sends no signature
    if caller in ("anonymous", "expired", "revoked", "node"):
        return False
    if caller == "admin":
        return True
    if caller == "developer":
        return level != "admin"
    if caller == "viewer":
        return level not in ("admin", "developer")
    if caller == "tenant-a":
        return level.startswith("tenant-")
    return level == "tenant-any"  # tenant B, on A's things


def routes() -> Iterator[tuple[str, str, Any]]:
    def walk(items: list[Any]) -> Iterator[Any]:
        for item in items:
            if hasattr(item, "original_router"):
                yield from walk(item.original_router.routes)
            else:
                yield item

    app = create_app(Settings())
    for route in walk(app.routes):
        if isinstance(route, APIWebSocketRoute):
            continue  # node sessions authenticate in their hello (test_runtime.py), live sockets in their handshake (test_ws.py)
        for method in sorted(getattr(route, "methods", None) or []):
            if method != "HEAD":
                yield method, route.path.replace(":path}", "}"), route


def test_every_route_has_a_rule_and_states_it() -> None:
    seen = set()
    for method, path, route in routes():
        assert (method, path) in EXPECTED, f"{method} {path} has no rule in EXPECTED"
        seen.add((method, path))
        level = EXPECTED[(method, path)]
        rules = [d.call for d in route.dependant.dependencies] if isinstance(
            route, APIRoute
        ) else []  # fmt: skip
        declared = [r for r in rules if isinstance(r, Allow)]
        if level == "public":
            assert path in PUBLIC and not declared, f"{method} {path} should be public"
        elif level == "signed":
            assert path in SIGNED and not declared, f"{method} {path} is signed, not Allow"
        else:
            assert len(declared) == 1, f"{method} {path} must declare exactly one Allow"
    assert seen == set(EXPECTED), f"rules for routes that do not exist: {set(EXPECTED) - seen}"


@dataclass
class World:
    headers: dict[str, dict[str, str]]
    tenant_a: str
    tenant_b: str
    run_a: str
    replica_a: str
    schedule_a: str
    stack: str
    webhook: str
    agent_run_a: str


@pytest.fixture(scope="module")
def world(server: ServerProcess, node: NodeProcess) -> World:
    mark = uuid.uuid4().hex[:6]
    a, b, stack = f"a-{mark}", f"b-{mark}", f"s-{mark}"
    stack_doc = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Stack",
        "metadata": {"name": stack},
        "spec": {"components": [SLEEPER, {"name": "job", "type": "job", "command": ["true"]}]},
    }
    apply(server, stack_doc, *webhook_source(f"w-{mark}"))
    run_id = provision(server, org=f"o-{mark}", tenant=a, stack=stack)
    with server.client() as http:
        apply(
            server,
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Tenant",
                "metadata": {"name": b},
                "spec": {"org": f"o-{mark}", "stack": stack},
            },
        )
        headers = {"anonymous": {}, "admin": {"Authorization": f"Bearer {server.token}"}}
        for role in ("viewer", "developer", "node"):
            key = http.post("/api/v1/tokens", json={"role": role}).json()["token"]
            headers[role] = {"Authorization": f"Bearer {key}"}
        revoked = http.post("/api/v1/tokens", json={"role": "admin"}).json()
        http.post(f"/api/v1/tokens/{revoked['id']}/revoke")
        headers["revoked"] = {"Authorization": f"Bearer {revoked['token']}"}
        expired = http.post("/api/v1/tokens", json={"role": "admin", "expires_in_s": 1}).json()
        headers["expired"] = {"Authorization": f"Bearer {expired['token']}"}
        for name, tenant in (("tenant-a", a), ("tenant-b", b)):
            token = http.post(f"/api/v1/tenants/{tenant}/tokens", json={}).json()["token"]
            headers[name] = {"Authorization": f"Bearer {token}"}
        # A's agent has no port, so this run fails and is retried: a real run to read.
        agent_run = http.post("/api/v1/agents/run", json={"tenant": a, "input": {}}).json()

        def expired_now() -> bool:
            return http.get("/api/v1/nodes", headers=headers["expired"]).status_code == 401

        wait_for(expired_now, timeout_s=10, what="the 1 s key to expire")
    replica = wait_for(lambda: replicas(server, a, "agent"), what="A's replica")[0]
    return World(
        headers=headers,
        tenant_a=a,
        tenant_b=b,
        run_a=run_id,
        replica_a=replica["id"],
        schedule_a=f"{a}-nightly",
        stack=stack,
        webhook=f"w-{mark}",
        agent_run_a=agent_run["id"],
    )


def webhook_source(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Secret and a GitHub WebhookSource using it, both called `name`."""
    secret = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "spec": {"data": {"value": "not-sent-by-the-matrix"}},
    }
    source = {
        "apiVersion": "armillary.dev/v1",
        "kind": "WebhookSource",
        "metadata": {"name": name},
        "spec": {"type": "github", "secrets": [{"name": name}], "routing": {"key_space": "github"}},
    }
    return secret, source


def request_for(method: str, path: str, world: World) -> tuple[str, dict[str, str], Any]:
    """A call of the route that changes nothing: A's real things to read; to write,
    names that do not exist or bodies that are refused after authorization."""
    writing = method != "GET"
    values = {
        "tenant": "nobody-here" if writing and "tokens" in path else world.tenant_a,
        "name": "nothing-here" if writing else world.tenant_a,
        "run_id": world.run_a,
        "replica_id": world.replica_a,
        "component": "agent",
        "token_id": "nope",
        "source": world.webhook,
        "asset": "app.js",
    }
    if path.startswith("/api/v1/provision/tenants/"):
        values["tenant"] = "nobody-here"
    if path.startswith("/api/v1/runs/"):  # agent runs: A's to read, none to retry
        values["run_id"] = "nothing-here" if writing else world.agent_run_a
    if path.startswith("/api/v1/schedules/"):
        values["name"] = "nothing-here" if writing else world.schedule_a
    if "/{name}" in path and not writing and not path.startswith("/api/v1/tenants/"):
        kind_path = path.split("/")[3]
        values["name"] = {"stacks": world.stack, "schedules": world.schedule_a}.get(
            kind_path, world.tenant_a
        )
    url = path.format(**values)
    query = (
        {"tenant": world.tenant_a}
        if path in ("/api/v1/replicas", "/api/v1/provision/runs", "/api/v1/events", "/api/v1/runs")
        else {}
    )
    if path.endswith("/logs"):
        query["tail"] = "1"
    body: dict[str, Any] | None = {} if writing and method != "DELETE" else None
    return url, query, body


@pytest.mark.parametrize("caller", CALLERS)
def test_authorization_matrix(server: ServerProcess, world: World, caller: str) -> None:
    wrong = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for method, path, _route in routes():
            url, query, body = request_for(method, path, world)
            response = http.request(
                method, url, params=query, json=body, headers=world.headers[caller]
            )
            refused = response.status_code in (401, 403) or (
                caller.startswith("tenant") and response.status_code == 404
            )
            expected = allowed(EXPECTED[(method, path)], caller)
            if refused == expected or response.status_code >= 500:
                wrong.append(f"{method} {url}: {response.status_code} {response.text[:120]}")
    assert not wrong, f"{caller}:\n" + "\n".join(wrong)


def test_a_tenant_token_sees_nothing_of_another_tenant(server: ServerProcess, world: World) -> None:
    a, b = world.tenant_a, world.tenant_b
    replica_b = wait_for(lambda: replicas(server, b, "agent"), what="B's replica")[0]["id"]
    as_a = world.headers["tenant-a"]
    with httpx.Client(base_url=server.url, headers=as_a, timeout=30) as http:
        assert http.get(f"/api/v1/tenants/{a}").status_code == 200
        for path in (
            f"/api/v1/tenants/{b}",
            f"/api/v1/tenants/{b}/rollouts",
            f"/api/v1/replicas/{replica_b}/logs",
            f"/api/v1/replicas?tenant={b}",
            f"/api/v1/provision/runs?tenant={b}",
            f"/api/v1/runs?tenant={b}",
            "/api/v1/provision/runs/00000000-0000-0000-0000-000000000000",
        ):
            response = http.get(path)
            assert response.status_code == 404, (path, response.text)
            assert b not in response.text
        for path in (
            "/api/v1/tenants",
            "/api/v1/replicas",
            "/api/v1/provision/runs",
            "/api/v1/runs",
        ):
            assert http.get(path).status_code == 403, path  # nothing cluster-wide
        mine = http.get("/api/v1/replicas", params={"tenant": a}).json()["items"]
        assert {r["tenant"] for r in mine} == {a}
        jobs = http.get("/api/v1/scheduled-jobs").json()["items"]
        assert jobs and {j["tenant"] for j in jobs} == {a}
        assert http.delete(f"/api/v1/tenants/{b}").status_code == 403
        assert http.post("/api/v1/apply", json={"documents": []}).status_code == 403
    with server.client() as admin:
        assert admin.get(f"/api/v1/tenants/{b}").status_code == 200  # untouched


def test_a_session_needs_its_csrf_token_to_change_anything(server: ServerProcess) -> None:
    name = f"ana-{uuid.uuid4().hex[:6]}"
    with server.client() as admin:
        created = admin.post(
            "/api/v1/users",
            json={"name": name, "password": "correct horse battery", "role": "developer"},
        )
        assert created.status_code == 201, created.text
        assert admin.post("/api/v1/plan", json={"documents": []}).status_code == 200  # bearer
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        login = browser.post(
            "/api/v1/auth/login", json={"name": name, "password": "correct horse battery"}
        )
        assert login.status_code == 200, login.text
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        csrf = login.json()["csrfToken"]
        assert browser.get("/api/v1/auth/whoami").json()["id"] == name
        refused = browser.post("/api/v1/plan", json={"documents": []})
        assert refused.status_code == 403 and "CSRF" in refused.text
        wrong = browser.post("/api/v1/plan", json={"documents": []}, headers={"X-CSRF-Token": "x"})
        assert wrong.status_code == 403
        ok = browser.post("/api/v1/plan", json={"documents": []}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200, ok.text
        assert browser.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).json() == {
            "loggedOut": True
        }
        assert browser.get("/api/v1/auth/whoami").status_code == 401


def test_a_login_link_opens_one_session_once(server: ServerProcess) -> None:
    """`armillary dashboard`'s link: made by an admin for a user (created as an admin
    when missing), redeemed once for a session with its own CSRF token; the code is
    never a session cookie itself, and a second use is refused."""
    name = f"link-{uuid.uuid4().hex[:6]}"
    code, printed, err = invoke(server, "dashboard", "--no-open", "--user", name)
    assert code != 0 and name in printed + err  # a mistyped name makes no admin
    with server.client() as admin:
        assert name not in {u["name"] for u in admin.get("/api/v1/users").json()["items"]}
    code, printed, _ = invoke(server, "dashboard", "--no-open", "--user", name, "--create")
    assert code == 0, printed
    assert f"{server.url}/#login=" in printed and f"for {name}" in printed
    with server.client() as admin:
        made = admin.post("/api/v1/auth/links", json={"user": name})
        assert made.status_code == 201, made.text
        assert made.json()["created"] is False  # the CLI's call created it
        assert made.json()["path"].startswith("/#login=")
        users = {u["name"]: u for u in admin.get("/api/v1/users").json()["items"]}
        assert users[name]["role"] == "admin"
        bad = admin.post("/api/v1/auth/links", json={"user": "Not A Name"})
        assert bad.status_code == 422
    link = made.json()["path"].removeprefix("/#login=")
    with httpx.Client(base_url=server.url, timeout=30, cookies={"armillary_session": link}) as raw:
        assert raw.get("/api/v1/auth/whoami").status_code == 401  # a link is no session
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        opened = browser.post("/api/v1/auth/redeem", json={"code": link})
        assert opened.status_code == 200, opened.text
        assert "httponly" in opened.headers["set-cookie"].lower()
        assert browser.get("/api/v1/auth/whoami").json() == {
            "kind": "user",
            "id": name,
            "role": "admin",
            "tenant": None,
        }
        csrf = opened.json()["csrfToken"]
        assert browser.post("/api/v1/plan", json={}, headers={"X-CSRF-Token": csrf}).is_success
    with httpx.Client(base_url=server.url, timeout=30) as again:
        used = again.post("/api/v1/auth/redeem", json={"code": link})
        assert used.status_code == 401 and "armillary dashboard" in used.text
        assert again.post("/api/v1/auth/redeem", json={"code": "x" * 43}).status_code == 401
    with server.client() as admin:
        rows = admin.get("/api/v1/audit", params={"name": name}).json()["items"]
    redeemed = [r for r in rows if r["path"] == "/api/v1/auth/redeem" and r["status"] == 200]
    assert redeemed and "linkIssuedBy" in json.dumps(redeemed[0]), redeemed
    assert server.token.split("_")[1] in json.dumps(redeemed[0])  # the admin who made it


MARKUP_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "srcdoc")


def test_the_dashboard_is_served_with_a_policy_that_runs_no_inline_script(
    server: ServerProcess,
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anyone:
        page = anyone.get("/")
        script = anyone.get("/ui/app.js")
        missing = anyone.get("/ui/nothing.js")
        walked = anyone.get("/ui/..%2Froutes%2Fdashboard.py")
    assert page.status_code == 200 and '<script type="module" src="/ui/app.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert missing.status_code == 404 and walked.status_code == 404
    with httpx.Client(base_url=server.url, timeout=30) as anyone:
        served = {name: anyone.get(f"/ui/{name}") for name in dashboard.ASSETS}
    assert all(r.status_code == 200 for r in served.values())
    for name, answer in served.items():  # no asset parses a string as markup
        for sink in MARKUP_SINKS:
            assert sink not in answer.text, (name, sink)
    modules = {name for name in dashboard.ASSETS if name.endswith(".js")} - {"app.js"}
    assert all(f'<link rel="modulepreload" href="/ui/{m}">' in page.text for m in modules)


def test_repeated_wrong_passwords_lock_the_user_out(server: ServerProcess) -> None:
    name = f"bo-{uuid.uuid4().hex[:6]}"
    password = "a long enough secret"
    with server.client() as admin:
        admin.post("/api/v1/users", json={"name": name, "password": password, "role": "viewer"})
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        for _ in range(5):  # ARMILLARY_LOGIN_MAX_FAILURES defaults to 5
            wrong = browser.post("/api/v1/auth/login", json={"name": name, "password": "nope"})
            assert wrong.status_code == 401
        locked = browser.post("/api/v1/auth/login", json={"name": name, "password": password})
        assert locked.status_code == 401 and "wrong user name or password" in locked.text
        unknown = browser.post("/api/v1/auth/login", json={"name": "ghost", "password": "x"})
        assert unknown.status_code == 401 and "wrong user name or password" in unknown.text
    with server.client() as admin:
        [user] = [u for u in admin.get("/api/v1/users").json()["items"] if u["name"] == name]
        assert user["lockedUntil"] is not None


def count_everything(server: ServerProcess) -> dict[str, int]:
    with server.client() as http:
        return {
            kind.plural: len(http.get(f"/api/v1/{kind.plural}").json()["items"])
            for kind in kinds.KINDS
        }


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer a b",
        "bearer arm_",
        "Bearer arm_" + "x" * 10_000,
        "Bearer armt_" + "x" * 10_000,
        "Bearer armt_eyJhbGciOiJub25lIn0.eyJ0ZW5hbnQiOiJhIn0.",
        "Bearer ' OR 1=1 --",
        "Bearer \u00e9t\u00e9",
    ],
)
def test_malformed_authorization_is_401_and_changes_nothing(
    server: ServerProcess, header: str
) -> None:
    before = count_everything(server)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        document = {"apiVersion": "armillary.dev/v1", "kind": "Org", "metadata": {"name": "x"}}
        response = http.post(
            "/api/v1/apply",
            json={"documents": [{**document, "spec": {}}]},
            headers=[(b"Authorization", header.encode("utf-8"))],
        )
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert count_everything(server) == before


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/api/v1/tenants/' OR '1'='1", None),
        ("GET", "/api/v1/tenants/x; DROP TABLE resources; --", None),
        ("GET", "/api/v1/tenants", {"selector": "a=b' OR '1'='1"}),
        ("GET", "/api/v1/tenants", {"selector": '{"$ne": null}'}),
        ("GET", "/api/v1/provision/runs", {"tenant": "' OR 1=1 --"}),
        ("GET", "/api/v1/replicas", {"tenant": "x' UNION SELECT * FROM api_tokens --"}),
        ("GET", "/api/v1/tenants/..%2F..%2Fetc%2Fpasswd", None),
        ("GET", "/api/v1/replicas/..%2F..%2Fetc%2Fpasswd/logs", None),
        ("DELETE", "/api/v1/tenants/..%2Fx", None),
        ("PUT", "/api/v1/tenants/..%2Fx", None),
        ("DELETE", "/api/v1/users/..%2F..%2Froot", None),
    ],
)
def test_injection_and_traversal_in_names_and_filters_are_4xx(
    server: ServerProcess, method: str, path: str, params: dict[str, str] | None
) -> None:
    before = count_everything(server)
    with server.client() as http:
        body = {"apiVersion": "armillary.dev/v1", "kind": "Tenant"} if method == "PUT" else None
        response = http.request(method, path, params=params, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert "api_tokens" not in response.text.replace("api_tokens --", "")
    assert count_everything(server) == before


def test_responses_carry_security_headers(server: ServerProcess) -> None:
    with server.client() as http:
        response = http.get("/api/v1/nodes")
        docs = http.get("/api/v1/docs")
    for answer in (response, docs):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["cache-control"] == "no-store"


def test_revoking_or_recreating_a_tenant_refuses_its_old_tokens(
    server: ServerProcess, world: World
) -> None:
    name = f"c-{uuid.uuid4().hex[:6]}"
    tenant = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"org": "acme", "stack": world.stack},
    }
    apply(server, {**tenant, "kind": "Org", "metadata": {"name": "acme"}, "spec": {}}, tenant)
    with server.client() as admin:
        old = admin.post(f"/api/v1/tenants/{name}/tokens", json={}).json()["token"]

        def whoami(token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.get(f"{server.url}/api/v1/auth/whoami", headers=headers).status_code

        assert whoami(old) == 200
        assert admin.post(f"/api/v1/tenants/{name}/tokens/revoke").status_code == 200
        assert whoami(old) == 401
        fresh = admin.post(f"/api/v1/tenants/{name}/tokens", json={}).json()["token"]
        assert whoami(fresh) == 200
        assert admin.delete(f"/api/v1/tenants/{name}").status_code == 200
        assert whoami(fresh) == 401
        apply(server, tenant)  # the same name again is another tenant
        assert whoami(fresh) == 401
        too_long = admin.post(f"/api/v1/tenants/{name}/tokens", json={"ttl_s": 10**6})
        assert too_long.status_code == 422


def test_production_mode_refuses_to_start_without_a_key(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("prod"),
        database_url=None,
        extra_env={"ARMILLARY_MODE": "production"},
    )
    with pytest.raises(RuntimeError, match="ARMILLARY_SECRET_KEY is not set"):
        proc.start()


def test_the_rate_limit_answers_429_and_cors_opens_only_to_named_origins(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("limited"),
        database_url=None,
        extra_env={
            "ARMILLARY_RATE_LIMIT_PER_S": "0.5",
            "ARMILLARY_RATE_LIMIT_BURST": "3",
            "ARMILLARY_CORS_ORIGINS": '["https://dash.example"]',
        },
    )
    proc.start()
    try:
        for origin, allowed in (("https://dash.example", True), ("https://evil.example", False)):
            preflight = httpx.options(
                f"{proc.url}/api/v1/nodes",
                headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
            )
            opened = preflight.headers.get("access-control-allow-origin") == origin
            assert opened == allowed, (origin, preflight.status_code, preflight.headers)
        with proc.client() as http:
            codes = [http.get("/api/v1/nodes").status_code for _ in range(4)]
            limited = http.get("/api/v1/nodes")
        assert codes[:3] == [200, 200, 200] and 429 in (codes[3], limited.status_code)
        assert int(limited.headers["retry-after"]) >= 1
        assert httpx.get(f"{proc.url}/healthz").status_code == 200  # only the API is limited
    finally:
        proc.stop()


def test_cors_is_closed_unless_configured(server: ServerProcess) -> None:
    preflight = httpx.options(
        f"{server.url}/api/v1/nodes",
        headers={"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
