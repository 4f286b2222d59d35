"""The audit log against a real server, on SQLite and Postgres: what a mutating call
records (one row per changed document), refusals, who may read it, filters and
paging, injection attempts, secrets that must never be in it, request ids, the
retention loop, and the CLI. Then the store functions with an injected clock, and
the middleware's promise: no acknowledged mutation without its row."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from sqlalchemy import select, text

from armillary.api import audit as audit_api
from armillary.api import problems
from armillary.control import retention
from armillary.store import audit
from armillary.store import retention as store_retention
from armillary.store.database import Database
from armillary.store.tables import audit_log
from tests.support import documents
from tests.support.cli import Cli
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

CLEANUP_INTERVAL_S = 0.5
# The module's server runs its retention loop twice a second.
SERVER_ENV = {"ARMILLARY_AUDIT_CLEANUP_INTERVAL_S": str(CLEANUP_INTERVAL_S)}
INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE audit_log; --",
    '" OR 1=1 --',
    "x' UNION SELECT id, secret_hash FROM api_tokens --",
    "%",
    "_",
    "*",
    "\\",
    "a\x00b",
    "😀",
    "${jndi:ldap://x}",
    "a" * 301,
]


def _mark() -> str:
    return uuid.uuid4().hex[:8]


def _stack(name: str) -> dict[str, Any]:
    return documents.stack(name, {"name": "agent", "command": ["sleep", "100000"]})


def _admin_principal(server: ServerProcess) -> str:
    return "token:" + server.token.split("_")[1]


def _rows(server: ServerProcess, **params: Any) -> list[dict[str, Any]]:
    with server.client() as http:
        response = http.get("/api/v1/audit", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _table(server: ServerProcess) -> list[str]:
    """Every audit row, every column, as text: what a reader of the table would see."""
    db = await Database.open(server.store_url, migrate=False)
    try:
        async with db.read() as conn:
            return [repr(tuple(row)) for row in await conn.execute(select(audit_log))]
    finally:
        await db.close()


def test_apply_records_one_row_per_changed_document(server: ServerProcess) -> None:
    mark = _mark()
    org, stack = f"o-{mark}", f"s-{mark}"
    with server.client() as http:
        first = http.post(
            "/api/v1/apply",
            json={"documents": [documents.org(org), _stack(stack)]},
            headers={"X-Request-ID": f"apply-1-{mark}"},
        )
        assert first.status_code == 200
        assert first.headers["x-request-id"] == f"apply-1-{mark}"
        changed = {"documents": [documents.org(org, display_name="Org"), _stack(stack)]}
        http.post("/api/v1/apply", json=changed, headers={"X-Request-ID": f"apply-2-{mark}"})
        http.post("/api/v1/apply", json=changed, headers={"X-Request-ID": f"apply-3-{mark}"})

    created = _rows(server, request_id=f"apply-1-{mark}")
    assert sorted((r["kind"], r["name"]) for r in created) == [("Org", org), ("Stack", stack)]
    for row in created:
        assert (row["generationBefore"], row["generationAfter"]) == (None, 1)
        assert (row["verb"], row["path"], row["status"], row["outcome"]) == (
            "POST",
            "/api/v1/apply",
            200,
            "created",
        )
        assert row["principal"] == _admin_principal(server)
        assert (row["principalKind"], row["role"], row["tenant"]) == ("token", "admin", None)
        assert row["source"] == "127.0.0.1"
        assert row["at"].endswith("Z") and row["durationMs"] >= 0
    [configured] = _rows(server, request_id=f"apply-2-{mark}")
    assert (configured["kind"], configured["name"], configured["outcome"]) == (
        "Org",
        org,
        "configured",
    )
    assert (configured["generationBefore"], configured["generationAfter"]) == (1, 2)
    [unchanged] = _rows(server, request_id=f"apply-3-{mark}")
    assert (unchanged["kind"], unchanged["outcome"], unchanged["detail"]) == (
        None,
        "unchanged",
        {"documents": 2},
    )


def test_put_and_delete_record_generations(server: ServerProcess) -> None:
    name = f"o-{_mark()}"
    with server.client() as http:
        assert http.put(f"/api/v1/orgs/{name}", json=documents.org(name)).status_code == 201
        assert (
            http.put(f"/api/v1/orgs/{name}", json=documents.org(name, description="d")).status_code
            == 200
        )
        assert http.delete(f"/api/v1/orgs/{name}").status_code == 200
    rows = _rows(server, kind="Org", name=name)
    assert [
        (r["verb"], r["status"], r["outcome"], r["generationBefore"], r["generationAfter"])
        for r in rows
    ] == [
        ("DELETE", 200, "deleted", 2, None),
        ("PUT", 200, "configured", 1, 2),
        ("PUT", 201, "created", None, 1),
    ]


def test_refused_requests_are_recorded_with_their_outcome(server: ServerProcess) -> None:
    mark = _mark()
    with server.client() as http:
        viewer = http.post("/api/v1/tokens", json={"role": "viewer"}).json()
        cases: list[tuple[str | None, str, str, Any, int]] = [
            (None, "POST", "/api/v1/apply", {"documents": []}, 401),
            ("admin", "POST", "/api/v1/apply", {"docs": []}, 422),
            (viewer["token"], "POST", "/api/v1/apply", {"documents": []}, 403),
            ("admin", "DELETE", f"/api/v1/orgs/gone-{mark}", None, 404),
            ("admin", "POST", f"/api/v1/tenants/gone-{mark}/rollouts/agent/undo", {}, 404),
            ("admin", "POST", "/api/v1/audit", {}, 405),
        ]
        for i, (token, method, path, body, status) in enumerate(cases):
            headers = {"X-Request-ID": f"refused-{i}-{mark}"}
            if token is None:
                headers["Authorization"] = ""
            elif token != "admin":
                headers["Authorization"] = f"Bearer {token}"
            response = http.request(method, path, json=body, headers=headers)
            assert response.status_code == status, (path, response.text)

    def only(i: int) -> dict[str, Any]:
        [row] = _rows(server, request_id=f"refused-{i}-{mark}")
        return row

    unauthenticated = only(0)
    assert (unauthenticated["status"], unauthenticated["outcome"]) == (401, "unauthorized")
    assert unauthenticated["principal"] is None and unauthenticated["path"] == "/api/v1/apply"
    invalid = only(1)
    assert (invalid["status"], invalid["outcome"]) == (422, "invalid")
    assert invalid["principal"] == _admin_principal(server)
    forbidden = only(2)
    assert (forbidden["outcome"], forbidden["principal"], forbidden["role"]) == (
        "forbidden",
        f"token:{viewer['id']}",
        "viewer",
    )
    missing = only(3)
    assert (missing["kind"], missing["name"], missing["outcome"]) == (
        "Org",
        f"gone-{mark}",
        "not-found",
    )
    undo = only(4)
    assert (undo["kind"], undo["name"], undo["status"]) == ("Tenant", f"gone-{mark}", 404)
    assert undo["detail"] == {"component": "agent"}
    assert only(5)["outcome"] == "method-not-allowed"  # the log has no write route


def test_only_admins_read_the_audit_log(server: ServerProcess) -> None:
    with server.client() as http:
        viewer = http.post("/api/v1/tokens", json={"role": "viewer"}).json()["token"]
        developer = http.post("/api/v1/tokens", json={"role": "developer"}).json()["token"]
        assert http.get("/api/v1/audit").status_code == 200
    for token, status in ((viewer, 403), (developer, 403), (None, 401)):
        with server.client(token=token) as http:
            response = http.get("/api/v1/audit")
            assert response.status_code == status
            assert "items" not in response.text


def test_filters_and_paging(server: ServerProcess) -> None:
    name = f"o-{_mark()}"
    with server.client() as http:
        http.put(f"/api/v1/orgs/{name}", json=documents.org(name))
        http.put(f"/api/v1/orgs/{name}", json=documents.org(name, description="d"))
        http.delete(f"/api/v1/orgs/{name}")
    everything = _rows(server, name=name)
    assert [r["outcome"] for r in everything] == ["deleted", "configured", "created"]
    assert [r["id"] for r in everything] == sorted((r["id"] for r in everything), reverse=True)
    created = everything[-1]

    def outcomes(**params: Any) -> list[str]:
        return [r["outcome"] for r in _rows(server, name=name, **params)]

    assert outcomes(kind="Org") == ["deleted", "configured", "created"]
    assert outcomes(kind="Stack") == []
    assert outcomes(verb="DELETE") == ["deleted"]
    assert outcomes(status=201) == ["created"]
    assert outcomes(outcome="configured") == ["configured"]
    assert len(outcomes(principal=_admin_principal(server))) == 3
    assert outcomes(principal="user:nobody") == []
    assert outcomes(tenant="acme") == []
    assert outcomes(request_id=created["requestId"]) == ["created"]
    assert outcomes(since=created["at"])[-1] == "created"  # since is inclusive
    assert outcomes(until=created["at"]) == []  # until is exclusive
    assert outcomes(since="2000-01-01T00:00:00+02:00", until="2999-01-01") == [
        "deleted",
        "configured",
        "created",
    ]

    seen: list[int] = []
    before: int | None = None
    with server.client() as http:
        while True:
            params: dict[str, Any] = {"name": name, "limit": 1}
            if before is not None:
                params["before_id"] = before
            page = http.get("/api/v1/audit", params=params).json()
            seen += [r["id"] for r in page["items"]]
            before = page["next"]
            if before is None:
                break
    assert seen == [r["id"] for r in everything]

    with server.client() as http:
        for params in (
            {"limit": 0},
            {"limit": 1001},
            {"before_id": 0},
            {"since": "yesterday"},
            {"until": "2026-13-01"},
            {"since": "9999-12-31T23:59:59-12:00"},
            {"status": 99},
            {"status": "ok"},
        ):
            assert http.get("/api/v1/audit", params=params).status_code == 422, params


def test_injection_strings_in_filters_are_harmless(server: ServerProcess) -> None:
    with server.client() as http:
        http.post("/api/v1/apply", json={"documents": [documents.org(f"o-{_mark()}")]})
        for value in INJECTIONS:
            for param in ("principal", "kind", "name", "tenant", "verb", "outcome", "request_id"):
                response = http.get("/api/v1/audit", params={param: value})
                assert response.status_code in (200, 422), (param, value, response.text)
                if response.status_code == 200:
                    assert response.json()["items"] == [], (param, value)
            for param in ("since", "until", "status", "limit", "before_id"):
                response = http.get("/api/v1/audit", params={param: value})
                assert response.status_code == 422, (param, value, response.text)
        # The table is still there, and still answers.
        assert len(http.get("/api/v1/audit", params={"limit": 1}).json()["items"]) == 1


def test_no_password_or_token_value_reaches_the_audit_log(server: ServerProcess) -> None:
    mark = _mark()
    user, password, wrong = f"ana-{mark}", f"pw-{mark}-Correct", f"pw-{mark}-Wrong"
    bogus = f"arm_bogus{mark}_{mark}{mark}"
    secrets = [password, wrong, bogus, server.token, server.token.split("_")[-1]]
    with server.client() as http:
        body = {"name": user, "password": password, "role": "viewer"}
        assert http.post("/api/v1/users", json=body).status_code == 201
        key = http.post("/api/v1/tokens", json={"role": "viewer"}).json()
        secrets += [key["token"], key["token"].split("_")[-1]]
        http.post(
            "/api/v1/apply", json={"documents": [documents.org(f"o-{mark}"), _stack(f"s-{mark}")]}
        )
        tenant = {
            "apiVersion": "armillary.dev/v1",
            "kind": "Tenant",
            "metadata": {"name": f"t-{mark}"},
            "spec": {"org": f"o-{mark}", "stack": f"s-{mark}"},
        }
        assert http.post("/api/v1/apply", json={"documents": [tenant]}).status_code == 200
        minted = http.post(f"/api/v1/tenants/t-{mark}/tokens", json={}).json()
        secrets.append(minted["token"])
        refused = http.post("/api/v1/apply", json={}, headers={"Authorization": f"Bearer {bogus}"})
        assert refused.status_code == 401
    with server.client(token=None) as browser:
        failed = browser.post("/api/v1/auth/login", json={"name": user, "password": wrong})
        assert failed.status_code == 401
        opened = browser.post("/api/v1/auth/login", json={"name": user, "password": password})
        assert opened.status_code == 200
        csrf = opened.json()["csrfToken"]
        secrets += [csrf, *browser.cookies.values()]
        logout = browser.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
        assert logout.status_code == 200

    dump = "\n".join(asyncio.run(_table(server)))
    for secret in secrets:
        assert secret not in dump, "a secret value is in the audit log"

    logins = _rows(server, kind="User", name=user, verb="POST")
    by_path = [(r["path"], r["outcome"], r["principal"]) for r in logins]
    assert ("/api/v1/auth/login", "ok", f"user:{user}") in by_path
    assert ("/api/v1/auth/login", "unauthorized", None) in by_path
    assert ("/api/v1/users", "ok", _admin_principal(server)) in by_path
    [key_row] = _rows(server, kind="ApiKey", name=key["id"])
    assert key_row["detail"] == {"role": "viewer"}
    [logout_row] = _rows(server, principal=f"user:{user}", outcome="ok", limit=1)
    assert logout_row["path"] == "/api/v1/auth/logout"


def test_every_response_carries_a_request_id(server: ServerProcess) -> None:
    mark = _mark()
    with server.client() as http:
        generated = [
            http.get("/healthz"),
            http.get("/api/v1/nothing-here"),
            http.get("/api/tenants"),  # a redirect
            http.get("/api/v1/orgs"),
        ]
        ids = [r.headers["x-request-id"] for r in generated]
        assert generated[2].status_code == 301
        assert len(set(ids)) == len(ids)
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)

        mine = http.post(
            "/api/v1/apply",
            json={"documents": [documents.org(f"o-{mark}")]},
            headers={"X-Request-ID": f"mine:{mark}"},
        )
        assert mine.headers["x-request-id"] == f"mine:{mark}"
        for unsafe in ("two words", "x" * 129, "semi;colon", "<b>"):
            response = http.get("/api/v1/orgs", headers={"X-Request-ID": unsafe})
            assert response.headers["x-request-id"] != unsafe
            assert len(response.headers["x-request-id"]) == 32
    [row] = _rows(server, request_id=f"mine:{mark}")
    assert row["name"] == f"o-{mark}"


async def test_the_retention_loop_removes_rows_past_the_retention(server: ServerProcess) -> None:
    mark = _mark()
    now = dt.datetime.now(dt.UTC)
    db = await Database.open(server.store_url, migrate=False)
    try:
        async with db.write() as conn:
            for age_days in (91, 89):
                entry = audit.Entry(
                    at=now - dt.timedelta(days=age_days),
                    verb="POST",
                    outcome="ok",
                    request_id=f"aged-{age_days}-{mark}",
                )
                await audit.record(conn, entry)
    finally:
        await db.close()

    def gone() -> bool:
        return _rows(server, request_id=f"aged-91-{mark}") == []

    await asyncio.to_thread(wait_for, gone, timeout_s=20, what="the 91-day-old row removed")
    assert len(_rows(server, request_id=f"aged-89-{mark}")) == 1


def test_cli_audit(server: ServerProcess, cli: Cli) -> None:
    name = f"o-{_mark()}"
    with server.client() as http:
        http.put(f"/api/v1/orgs/{name}", json=documents.org(name))
        http.put(f"/api/v1/orgs/{name}", json=documents.org(name, description="d"))
        viewer = http.post("/api/v1/tokens", json={"role": "viewer"}).json()["token"]
    code, out, err = cli("audit", "--kind", "Org", "--name", name, "--since", "1h")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "AT", "PRINCIPAL"]
    assert f"org/{name}" in lines[1] and "1→2" in lines[1] and "configured" in lines[1]
    assert "created" in lines[2]
    code, out, err = cli("audit", "--name", name, "--limit", "1", "-o", "json")
    assert code == 0, err
    [item] = json.loads(out)
    assert (item["outcome"], item["generationAfter"]) == ("configured", 2)
    code, out, _ = cli("audit", "--name", f"{name}-none")
    assert code == 0 and "no audit log entries match" in out
    code, _, err = cli("audit", "--since", "last tuesday")
    assert code == 4 and "since" in err
    code, _, err = cli("--token", viewer, "audit")
    assert code == 7 and "admin" in err


# The store functions, on a database of their own, with an injected clock.


T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


async def _seed(db: Database, ages_days: list[float]) -> None:
    async with db.write() as conn:
        for age in ages_days:
            at = T0 - dt.timedelta(days=age)
            await audit.record(conn, audit.Entry(at=at, verb="receive", outcome=f"age-{age}"))


async def test_expire_removes_only_rows_past_the_retention(store: Database) -> None:
    await _seed(store, [100, 95, 91, 90.5, 89, 1, 0])
    policy = {"audit": store_retention.Policy(max_age_s=90 * 86400)}
    now = T0
    loop = retention.Retention(store, policy, interval_s=3600, batch=2, clock=lambda: now)
    assert (await loop.run_once()).removed["audit"] == 4
    async with store.read() as conn:
        left = await audit.search(conn, audit.Filter())
    assert [r.entry.outcome for r in left] == ["age-0", "age-1", "age-89"]
    assert (await loop.run_once()).removed["audit"] == 0
    now = T0 + dt.timedelta(days=200)
    assert (await loop.run_once()).removed["audit"] == 3


async def test_search_bounds_and_a_non_http_entry(store: Database) -> None:
    await _seed(store, [3, 2, 1])
    entry = audit.Entry(
        at=T0,
        verb="receive",  # an action name: what webhook ingress will record
        outcome="accepted",
        principal="webhook:github-main",
        principal_kind="webhook",
        tenant="acme",
        kind="WebhookSource",
        name="github-main",
        detail={"event": "push"},
    )
    async with store.write() as conn:
        new_id = await audit.record(conn, entry)
    async with store.read() as conn:
        [found] = await audit.search(conn, audit.Filter(tenant="acme"))
        assert (found.id, found.entry) == (new_id, entry)
        window = audit.Filter(since=T0 - dt.timedelta(days=2), until=T0 - dt.timedelta(days=1))
        assert [r.entry.outcome for r in await audit.search(conn, window)] == ["age-2"]
        newest_two = await audit.search(conn, audit.Filter(limit=2))
        older = await audit.search(conn, audit.Filter(before_id=newest_two[-1].id))
    assert [r.entry.outcome for r in newest_two + older] == ["accepted", "age-1", "age-2", "age-3"]


# The middleware in process, on a real SQLite store: no acknowledgement without a row.


def _app(db: Database) -> FastAPI:
    app = FastAPI()

    @app.post("/api/v1/things/{name}")
    async def make(name: str, request: Request) -> dict[str, str]:
        audit_api.note(request, kind="Thing", name=name, result="created")
        if name == "boom":
            raise RuntimeError("the handler failed")
        return {"made": name}

    problems.install(app)
    app.add_middleware(audit_api.AuditLog)
    app.add_middleware(audit_api.RequestId)
    app.state.db = db
    return app


async def test_no_acknowledged_mutation_without_its_row(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite:///{tmp_path / 'm.db'}")
    transport = httpx.ASGITransport(app=_app(db), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            made = await http.post("/api/v1/things/a")
            assert made.status_code == 200 and made.headers["x-request-id"]
            boom = await http.post("/api/v1/things/boom", headers={"X-Request-ID": "boom-1"})
            assert boom.status_code == 500 and boom.headers["x-request-id"] == "boom-1"
            assert boom.headers["content-type"] == "application/problem+json"
            async with db.read() as conn:
                rows = await audit.search(conn, audit.Filter())
            assert [(r.entry.name, r.entry.status, r.entry.outcome) for r in rows] == [
                ("boom", 500, "error"),
                ("a", 200, "created"),
            ]
            assert rows[1].entry.request_id == made.headers["x-request-id"]

            async with db.write() as conn:
                await conn.execute(text("DROP TABLE audit_log"))
            lost = await http.post("/api/v1/things/b", headers={"X-Request-ID": "lost-1"})
            assert lost.status_code == 500 and "made" not in lost.text
            assert lost.headers["x-request-id"] == "lost-1"
    finally:
        await db.close()
