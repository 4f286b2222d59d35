"""Webhook ingress against a real server, on SQLite and Postgres: a signed GitHub
delivery is stored and routed to the tenant that lists its repository, or stored
unrouted; replays (same delivery id, or same body under a new id) store nothing new;
refusals (signature, size, rate) store nothing; tenant tokens see only their own
events; every acknowledged delivery survives a kill -9 of the server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import documents, tls
from tests.support.api import apply
from tests.support.cli import Cli
from tests.support.servers import ServerProcess

SECRET_VALUE = "It's a Secret to Everybody"
API = "armillary.dev/v1"


@dataclass
class World:
    source: str  # github, no limits
    small: str  # max_body_bytes 1024
    limited: str  # rate limit: burst 2, then about one an hour
    durable: str  # for the kill -9 test
    tenant_a: str
    tenant_b: str
    repo_a: str
    repo_b: str


def _tenant(name: str, org: str, stack: str, repos: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"org": org, "stack": stack, "routing": {"github": repos}},
    }


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> World:
    mark = uuid.uuid4().hex[:6]
    secret, org, stack = f"hooks-{mark}", f"o-{mark}", f"s-{mark}"
    w = World(
        source=f"gh-{mark}",
        small=f"small-{mark}",
        limited=f"limited-{mark}",
        durable=f"durable-{mark}",
        tenant_a=f"a-{mark}",
        tenant_b=f"b-{mark}",
        repo_a=f"acme/api-{mark}",
        repo_b=f"globex/web-{mark}",
    )
    apply(
        server,
        {
            "apiVersion": API,
            "kind": "Secret",
            "metadata": {"name": secret},
            "spec": {"data": {"signing": SECRET_VALUE}},
        },
        {"apiVersion": API, "kind": "Org", "metadata": {"name": org}, "spec": {}},
        {
            "apiVersion": API,
            "kind": "Stack",
            "metadata": {"name": stack},
            "spec": {"components": [{"name": "agent", "command": ["sleep", "100000"]}]},
        },
        _tenant(w.tenant_a, org, stack, [w.repo_a]),
        _tenant(w.tenant_b, org, stack, [w.repo_b]),
        documents.webhook_source(w.source, secret),
        documents.webhook_source(w.small, secret, max_body_bytes=1024),
        documents.webhook_source(w.limited, secret, rate_limit={"per_second": 0.0003, "burst": 2}),
        documents.webhook_source(w.durable, secret),
    )
    return w


def push(repo: str, **extra: Any) -> bytes:
    return json.dumps(
        {"ref": "refs/heads/main", "repository": {"full_name": repo}, **extra}
    ).encode()


def signed(body: bytes, *, event: str = "push", delivery: str | None = None) -> dict[str, str]:
    digest = hmac.new(SECRET_VALUE.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def deliver(
    server: ServerProcess, source: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30, verify=tls.CONTEXT) as http:
        return http.post(f"/webhooks/{source}", content=body, headers=headers)


def stored(server: ServerProcess, source: str, **filters: str) -> list[dict[str, Any]]:
    with server.client() as http:
        response = http.get("/api/v1/events", params={"source": source, "limit": 100, **filters})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_signed_delivery_is_stored_routed_and_audited(
    server: ServerProcess, world: World
) -> None:
    body = push(world.repo_a, after="c0ffee")
    headers = signed(body)
    response = deliver(server, world.source, body, headers)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["state"] == "routed"
    [event] = [e for e in stored(server, world.source) if e["id"] == answer["event"]]
    assert event["tenant"] == world.tenant_a
    assert event["routingKey"] == world.repo_a
    assert event["eventType"] == "push"
    assert event["deliveryId"] == headers["X-GitHub-Delivery"]
    assert json.loads(event["body"]) == json.loads(body)
    assert event["bodySha256"] == hashlib.sha256(body).hexdigest()
    assert "x-hub-signature-256" not in {k.lower() for k in event["headers"]}
    assert SECRET_VALUE not in json.dumps(event)
    with server.client() as http:
        rows = http.get(
            "/api/v1/audit", params={"principal": f"webhook:{world.source}", "verb": "receive"}
        ).json()["items"]
    assert any(
        r["detail"]["event"] == answer["event"] and r["tenant"] == world.tenant_a for r in rows
    )


def test_an_unknown_repository_is_stored_unrouted(server: ServerProcess, world: World) -> None:
    body = push(f"nobody/{uuid.uuid4().hex}")
    response = deliver(server, world.source, body, signed(body))
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "unrouted"
    [event] = [e for e in stored(server, world.source) if e["id"] == response.json()["event"]]
    assert event["tenant"] is None and event["state"] == "unrouted"


def test_a_delivery_sent_again_is_a_duplicate_and_stores_nothing(
    server: ServerProcess, world: World
) -> None:
    body = push(world.repo_b, after=uuid.uuid4().hex)
    headers = signed(body)
    first = deliver(server, world.source, body, headers)
    assert first.status_code == 202, first.text
    again = deliver(server, world.source, body, headers)
    assert again.status_code == 200, again.text
    assert again.json() == {"duplicate": True, "event": first.json()["event"]}
    # GitHub does not sign its delivery id: the same body under a new id is a replay too.
    renamed = deliver(server, world.source, body, signed(body))
    assert renamed.status_code == 200 and renamed.json()["duplicate"] is True
    mine = [e for e in stored(server, world.source) if e["body"] == body.decode()]
    assert len(mine) == 1 and mine[0]["tenant"] == world.tenant_b


def test_a_body_that_is_not_text_is_kept_byte_for_byte(server: ServerProcess, world: World) -> None:
    body = b"\xff\x00binary\x00" + uuid.uuid4().bytes  # NUL: Postgres text cannot hold it
    response = deliver(server, world.source, body, signed(body))
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "unrouted"  # no JSON, so no routing key
    [event] = [e for e in stored(server, world.source) if e["id"] == response.json()["event"]]
    assert event["bodyEncoding"] == "base64"
    assert base64.b64decode(event["body"]) == body


def test_a_ping_is_answered_and_not_stored(server: ServerProcess, world: World) -> None:
    before = len(stored(server, world.source))
    body = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    response = deliver(server, world.source, body, signed(body, event="ping"))
    assert response.status_code == 200 and response.json() == {"handshake": "pong"}
    assert len(stored(server, world.source)) == before


@pytest.mark.parametrize(
    ("change", "header", "reason"),
    [
        ("wrong", "X-Hub-Signature-256", "does not match"),
        ("missing", "X-Hub-Signature-256", "missing"),
        ("tampered", "X-Hub-Signature-256", "does not match"),
    ],
)
def test_a_bad_signature_is_401_and_stores_nothing(
    server: ServerProcess, world: World, change: str, header: str, reason: str
) -> None:
    before = len(stored(server, world.source))
    body = push(world.repo_a, after=uuid.uuid4().hex)
    headers = signed(body)
    if change == "wrong":
        headers[header] = "sha256=" + "0" * 64
    elif change == "missing":
        del headers[header]
    else:
        body = body.replace(b"main", b"prod")
    # A bearer token is no substitute for the signature.
    headers["Authorization"] = f"Bearer {server.token}"
    response = deliver(server, world.source, body, headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"{header}: {reason}"
    assert len(stored(server, world.source)) == before


def test_an_unknown_source_is_404(server: ServerProcess) -> None:
    body = push("acme/api")
    response = deliver(server, f"nothing-{uuid.uuid4().hex[:6]}", body, signed(body))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_a_body_over_the_source_limit_is_413_and_stores_nothing(
    server: ServerProcess, world: World
) -> None:
    body = push(world.repo_a, padding="x" * 2000)
    response = deliver(server, world.small, body, signed(body))
    assert response.status_code == 413, response.text
    assert "max_body_bytes is 1024" in response.text
    assert stored(server, world.small) == []
    fits = push(world.repo_a)
    assert deliver(server, world.small, fits, signed(fits)).status_code == 202


def test_the_source_rate_limit_is_429_with_retry_after(server: ServerProcess, world: World) -> None:
    answers = []
    for n in range(3):
        body = push(world.repo_a, n=n, run=uuid.uuid4().hex)
        answers.append(deliver(server, world.limited, body, signed(body)))
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert int(answers[2].headers["retry-after"]) >= 1
    assert len(stored(server, world.limited)) == 2


def test_tenant_tokens_list_only_their_own_events(server: ServerProcess, world: World) -> None:
    body = push(world.repo_a, after=uuid.uuid4().hex)
    assert deliver(server, world.source, body, signed(body)).status_code == 202
    with server.client() as http:
        token_a = http.post(f"/api/v1/tenants/{world.tenant_a}/tokens", json={}).json()["token"]
    with server.client(token=token_a) as http:
        mine = http.get("/api/v1/events", params={"tenant": world.tenant_a}).json()["items"]
        assert mine and {e["tenant"] for e in mine} == {world.tenant_a}
        assert http.get("/api/v1/events", params={"tenant": world.tenant_b}).status_code == 404
        assert http.get("/api/v1/events").status_code == 403  # unrouted ones are not theirs


def test_the_cli_lists_events(server: ServerProcess, world: World, cli: Cli) -> None:
    body = push(world.repo_b, after=uuid.uuid4().hex)
    event = deliver(server, world.source, body, signed(body)).json()["event"]
    code, out, _ = cli("events", "--source", world.source, "--tenant", world.tenant_b, "-o", "json")
    assert code == 0
    assert event in {e["id"] for e in json.loads(out)}
    code, out, _ = cli("events", "--source", world.source)
    assert code == 0 and "SOURCE" in out and event in out


def test_acknowledged_deliveries_survive_kill_9(server: ServerProcess, world: World) -> None:
    acknowledged = set()
    for n in range(20):
        body = push(world.repo_a, n=n, run=uuid.uuid4().hex)
        response = deliver(server, world.durable, body, signed(body))
        assert response.status_code == 202, response.text
        acknowledged.add(response.json()["event"])
    server.kill()
    server.start()
    kept = {e["id"] for e in stored(server, world.durable)}
    assert kept == acknowledged


def test_the_front_door_answers_as_the_api_does(server: ServerProcess, world: World) -> None:
    """Deliveries are answered before the API's middleware (webhooks.Front): they still
    carry the request id (given or made), the security headers and problem documents,
    and the audit row names the request."""
    body = push(world.repo_a)
    response = deliver(server, world.source, body, {**signed(body), "X-Request-ID": "hook-7"})
    assert response.status_code == 202, response.text
    assert response.headers["x-request-id"] == "hook-7"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    with server.client() as http:
        rows = http.get("/api/v1/audit", params={"request_id": "hook-7"}).json()["items"]
    assert [(r["verb"], r["outcome"], r["name"]) for r in rows] == [
        ("receive", "routed", world.source)
    ]
    made = deliver(server, world.source, b"{}", {"X-Hub-Signature-256": "sha256=00"})
    assert made.status_code == 401
    assert made.headers["content-type"] == "application/problem+json"
    assert len(made.headers["x-request-id"]) == 32  # made here: nothing was given
    with httpx.Client(base_url=server.url, timeout=30) as http:
        wrong_method = http.get(f"/webhooks/{world.source}")
    assert wrong_method.status_code == 405


def test_a_change_made_through_the_server_applies_to_the_next_delivery(
    server: ServerProcess, world: World
) -> None:
    """Sources, secrets and routing are held in memory; a change committed through this
    server reaches the very next delivery (no waiting out the cache)."""
    mark = uuid.uuid4().hex[:6]
    secret, source, repo = f"rot-{mark}", f"rot-{mark}", f"initech/tps-{mark}"
    old, new = "old " + SECRET_VALUE, "new " + SECRET_VALUE

    def secret_doc(value: str) -> dict[str, Any]:
        return {
            "apiVersion": API,
            "kind": "Secret",
            "metadata": {"name": secret},
            "spec": {"data": {"signing": value}},
        }

    def signed_with(value: str, body: bytes) -> dict[str, str]:
        digest = hmac.new(value.encode(), body, hashlib.sha256).hexdigest()
        return {**signed(body), "X-Hub-Signature-256": f"sha256={digest}"}

    body = push(repo)
    assert deliver(server, source, body, signed_with(old, body)).status_code == 404
    apply(server, secret_doc(old), documents.webhook_source(source, secret))
    first = deliver(server, source, body, signed_with(old, body))
    assert first.status_code == 202 and first.json()["state"] == "unrouted"

    apply(server, secret_doc(new))  # rotation: the old value stops working at once
    again = push(repo, n=2)
    assert deliver(server, source, again, signed_with(old, again)).status_code == 401
    assert deliver(server, source, again, signed_with(new, again)).status_code == 202

    with server.client() as http:
        tenant = http.get(f"/api/v1/tenants/{world.tenant_b}").json()
    tenant["spec"]["routing"]["github"].append(repo)
    apply(
        server,
        {
            "apiVersion": API,
            "kind": "Tenant",
            "metadata": {"name": world.tenant_b},
            "spec": tenant["spec"],
        },
    )
    routed = push(repo, n=3)
    answer = deliver(server, source, routed, signed_with(new, routed))
    assert answer.status_code == 202 and answer.json()["state"] == "routed"
    assert stored(server, source, tenant=world.tenant_b)[0]["id"] == answer.json()["event"]


async def test_concurrent_deliveries_are_each_stored_once(
    server: ServerProcess, world: World
) -> None:
    """Deliveries arriving together are committed together; a delivery sent twice at the
    same moment is stored once and both answers name that one event."""
    twice = [str(uuid.uuid4()) for _ in range(5)]
    bodies = [push(world.repo_b, n=n, run=uuid.uuid4().hex) for n in range(30)]
    requests = [(b, signed(b)) for b in bodies]
    requests += [(bodies[n], signed(bodies[n], delivery=twice[n])) for n in range(5)]
    requests[:5] = [(bodies[n], signed(bodies[n], delivery=twice[n])) for n in range(5)]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answers = await asyncio.gather(
            *(http.post(f"/webhooks/{world.source}", content=b, headers=h) for b, h in requests)
        )
    assert sorted(a.status_code for a in answers) == [200] * 5 + [202] * 30
    by_delivery: dict[str, set[str]] = {}
    for (_, headers), a in zip(requests, answers, strict=True):
        by_delivery.setdefault(headers["X-GitHub-Delivery"], set()).add(a.json()["event"])
    assert all(len(ids) == 1 for ids in by_delivery.values())
    mine = {a.json()["event"] for a in answers}
    kept = {e["id"] for e in stored(server, world.source, tenant=world.tenant_b)}
    assert mine <= kept and len(mine) == 30
