"""Every list in pages, on SQLite and Postgres: `?limit=` and `metadata.continue`.

1,050 events listed through pages are the stored set, none twice, while deliveries
keep arriving; other lists paged one or two at a time equal the unpaged list; a
`continue` that is no cursor is refused naming it; the CLI pages through by default
and shows at most `--limit`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import documents, tls
from tests.support.api import apply
from tests.support.cli import Cli
from tests.support.servers import ServerProcess

SECRET_VALUE = "paging-signing-key"
STORED = 1_050


@dataclass
class Hooks:
    source: str
    other: str  # a source of its own for the CLI tests: a few events, none arriving


@pytest.fixture(scope="module")
def hooks(server: ServerProcess) -> Hooks:
    mark = uuid.uuid4().hex[:6]
    found = Hooks(source=f"pg-{mark}", other=f"pg-cli-{mark}")
    secret = f"paging-{mark}"
    apply(
        server,
        {
            "apiVersion": "armillary.dev/v1",
            "kind": "Secret",
            "metadata": {"name": secret},
            "spec": {"data": {"signing": SECRET_VALUE}},
        },
        documents.webhook_source(found.source, secret),
        documents.webhook_source(found.other, secret),
    )
    return found


def _deliver(http: httpx.Client, source: str) -> str:
    """One signed delivery (to no tenant's repository: stored unrouted); its event id."""
    body = json.dumps(
        {"ref": "refs/heads/main", "repository": {"full_name": f"x/{uuid.uuid4().hex}"}}
    ).encode()
    digest = hmac.new(SECRET_VALUE.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={digest}",
    }
    answer = http.post(f"/webhooks/{source}", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["event"])


def _deliver_many(server: ServerProcess, source: str, count: int) -> set[str]:
    def some(n: int) -> list[str]:
        with httpx.Client(base_url=server.url, timeout=30, verify=tls.CONTEXT) as http:
            return [_deliver(http, source) for _ in range(n)]

    with ThreadPoolExecutor(4) as pool:
        shares = [count // 4 + (1 if i < count % 4 else 0) for i in range(4)]
        return {e for chunk in pool.map(some, shares) for e in chunk}


def _pages(
    server: ServerProcess, path: str, limit: int, **params: str
) -> Iterator[list[dict[str, Any]]]:
    token: str | None = None
    with server.client() as http:
        while True:
            query = {"limit": str(limit), **params, **({"continue": token} if token else {})}
            response = http.get(path, params=query)
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["items"]) <= limit
            yield body["items"]
            token = (body.get("metadata") or {}).get("continue")
            if token is None:
                return


def test_events_listed_through_pages_are_the_stored_set_while_deliveries_arrive(
    server: ServerProcess, hooks: Hooks
) -> None:
    before = _deliver_many(server, hooks.source, STORED)
    assert len(before) == STORED
    arrived: set[str] = set()
    stop = threading.Event()

    def keep_delivering() -> None:
        with httpx.Client(base_url=server.url, timeout=30, verify=tls.CONTEXT) as http:
            while not stop.is_set():
                arrived.add(_deliver(http, hooks.source))

    sender = threading.Thread(target=keep_delivering)
    sender.start()
    try:
        listed: list[str] = []
        pages = 0
        for page in _pages(server, "/api/v1/events", 100, source=hooks.source):
            listed.extend(e["id"] for e in page)
            pages += 1
    finally:
        stop.set()
        sender.join()
    assert arrived, "no delivery arrived while paging"
    assert pages > STORED // 100
    assert len(listed) == len(set(listed)), "an event was listed twice"
    assert before <= set(listed), "an event stored before paging was not listed"
    assert set(listed) <= before | arrived  # every listed event exists


def test_events_are_listed_newest_first_and_pages_join_up(
    server: ServerProcess, hooks: Hooks
) -> None:
    with server.client() as http:
        whole = http.get("/api/v1/events", params={"source": hooks.other, "limit": 100})
    assert whole.status_code == 200
    if len(whole.json()["items"]) < 5:
        _deliver_many(server, hooks.other, 5)
        with server.client() as http:
            whole = http.get("/api/v1/events", params={"source": hooks.other, "limit": 100})
    everything = whole.json()["items"]
    assert "metadata" not in whole.json() or not whole.json()["metadata"]
    keys = [(e["receivedAt"], e["id"]) for e in everything]
    assert keys == sorted(keys, reverse=True)
    for limit in (1, 2):
        pages = _pages(server, "/api/v1/events", limit, source=hooks.other)
        paged = [e["id"] for page in pages for e in page]
        assert paged == [e["id"] for e in everything]


@pytest.mark.parametrize("token", ["nope", "12_XYZ", "1" * 18 + "_ab", "_ab"])
def test_a_bad_continue_is_refused_naming_it(server: ServerProcess, token: str) -> None:
    with server.client() as http:
        response = http.get("/api/v1/events", params={"continue": token})
    assert response.status_code == 422
    assert "continue" in response.text


def test_the_cli_pages_through_events_and_shows_at_most_limit(
    server: ServerProcess, hooks: Hooks, cli: Cli
) -> None:
    source = hooks.other
    with server.client() as http:
        count = len(http.get("/api/v1/events", params={"source": source}).json()["items"])
    _deliver_many(server, source, max(0, 120 - count))  # more than a server page (100)
    newest = [e["id"] for p in _pages(server, "/api/v1/events", 100, source=source) for e in p]
    assert len(newest) >= 120
    code, out, err = cli("events", "--source", source, "-o", "json")
    assert code == 0, err
    assert [e["id"] for e in json.loads(out)] == newest
    code, out, err = cli("events", "--source", source, "--limit", "3", "-o", "json")
    assert code == 0, err
    assert [e["id"] for e in json.loads(out)] == newest[:3]


@dataclass
class World:
    tenant: str
    schedules: list[str]
    runs: set[str]  # the agent runs the routed events started


@pytest.fixture(scope="module")
def world(server: ServerProcess, hooks: Hooks) -> World:
    """A tenant with three Schedules, agent runs of routed events, three users and
    three API keys: a few items in every list that does not need a node."""
    mark = uuid.uuid4().hex[:6]
    name, repo = f"pt-{mark}", f"acme/paged-{mark}"
    schedules = [f"ps-{mark}-{n}" for n in range(3)]
    apply(
        server,
        documents.ACME,
        documents.stack(
            f"ps-{mark}",
            {"name": "agent", "command": ["sleep", "100000"], "replicas": 0},
            {"name": "report", "command": ["true"], "replicas": 0},
        ),
        documents.tenant(name, f"ps-{mark}", routing={"github": [repo]}),
        *(
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Schedule",
                "metadata": {"name": s},
                "spec": {"tenant": name, "component": "report", "cron": "0 0 1 1 *"},
            }
            for s in schedules
        ),
    )
    runs: set[str] = set()
    with httpx.Client(base_url=server.url, timeout=30, verify=tls.CONTEXT) as http:
        for _ in range(4):
            push = {"ref": "main", "after": uuid.uuid4().hex, "repository": {"full_name": repo}}
            body = json.dumps(push).encode()
            digest = hmac.new(SECRET_VALUE.encode(), body, hashlib.sha256).hexdigest()
            answer = http.post(
                f"/webhooks/{hooks.source}",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": f"sha256={digest}",
                },
            )
            assert answer.status_code == 202, answer.text
            runs.add(str(answer.json()["run"]))
    with server.client() as http:
        for n in range(3):
            user = {"name": f"pu-{mark}-{n}", "password": "correct horse battery", "role": "viewer"}
            assert http.post("/api/v1/users", json=user).status_code == 201
            key = http.post("/api/v1/tokens", json={"role": "viewer", "description": f"k{n}"})
            assert key.status_code in (200, 201), key.text
    return World(tenant=name, schedules=schedules, runs=runs)


def _ids(items: list[dict[str, Any]]) -> list[str]:
    def one(item: dict[str, Any]) -> str:
        if "metadata" in item:
            return str(item["metadata"]["name"])
        return str(item.get("id") or item.get("name") or json.dumps(item, sort_keys=True))

    return [one(i) for i in items]


# path, the query without a limit, how many the list must hold at least
LISTS: list[tuple[str, dict[str, str], int]] = [
    ("/api/v1/tokens", {}, 3),
    ("/api/v1/users", {}, 3),
    ("/api/v1/nodes", {}, 0),
    ("/api/v1/replicas", {}, 0),
    ("/api/v1/provision/runs", {}, 0),
    ("/api/v1/scheduled-jobs", {}, 3),
    ("/api/v1/runs", {"limit": "200"}, 4),
    ("/api/v1/audit", {"limit": "1000", "verb": "POST"}, 5),  # not the 1,000 deliveries
    ("/api/v1/tenants", {}, 1),
]


@pytest.mark.parametrize(("path", "whole_query", "least"), LISTS)
def test_every_list_paged_one_or_two_at_a_time_equals_the_whole(
    server: ServerProcess, world: World, path: str, whole_query: dict[str, str], least: int
) -> None:
    with server.client() as http:
        answer = http.get(path, params=whole_query)
    assert answer.status_code == 200, answer.text
    assert not (answer.json().get("metadata") or {}).get("continue")
    with server.client() as http:  # a list that pages checks its cursor
        assert http.get(path, params={"continue": "\x00"}).status_code == 422
    whole = _ids(answer.json()["items"])
    assert len(whole) >= least
    for limit in (1, 2):
        filters = {k: v for k, v in whole_query.items() if k != "limit"}
        pages = list(_pages(server, path, limit, **filters))
        assert [i for page in pages for i in _ids(page)] == whole
        assert len(pages) >= len(whole) // limit


def test_a_schedules_runs_and_a_tenants_rollouts_page(server: ServerProcess, world: World) -> None:
    with server.client() as http:
        for _ in range(3):
            started = http.post(f"/api/v1/schedules/{world.schedules[0]}/run")
            assert started.status_code in (202, 409), started.text
    for path in (
        f"/api/v1/schedules/{world.schedules[0]}/runs",
        f"/api/v1/tenants/{world.tenant}/rollouts",
    ):
        with server.client() as http:
            whole = _ids(http.get(path).json()["items"])
            assert http.get(path, params={"continue": "\x00"}).status_code == 422
        for limit in (1, 2):
            assert [i for p in _pages(server, path, limit) for i in _ids(p)] == whole


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/api/v1/runs", "nope"),
        ("/api/v1/audit", "-1"),
        ("/api/v1/nodes", "x" * 513),
        ("/api/v1/users", "a\x00b"),
    ],
)
def test_a_bad_continue_on_any_list_is_refused_naming_it(
    server: ServerProcess, path: str, token: str
) -> None:
    with server.client() as http:
        response = http.get(path, params={"continue": token})
    assert response.status_code == 422, response.text
    assert "continue" in response.text


def test_the_cli_pages_through_lists_and_limits_them(
    server: ServerProcess, world: World, cli: Cli
) -> None:
    with server.client() as http:
        users = [u["name"] for u in http.get("/api/v1/users").json()["items"]]
        runs = [r["id"] for r in http.get("/api/v1/runs", params={"limit": 200}).json()["items"]]
    assert len(users) >= 3
    code, out, err = cli("users", "list", "--limit", "2", "-o", "json")
    assert code == 0, err
    assert [u["name"] for u in json.loads(out)] == users[:2]
    code, out, err = cli("runs", "--limit", "3", "-o", "json")
    assert code == 0, err
    assert [r["id"] for r in json.loads(out)] == runs[:3]
    with server.client() as http:
        tenants = [t["metadata"]["name"] for t in http.get("/api/v1/tenants").json()["items"]]
    code, out, err = cli("get", "tenants", "--limit", "1", "-o", "name")
    assert code == 0, err
    assert out.split() == [f"tenant/{tenants[0]}"]
    code, out, err = cli("token", "list", "-o", "json")
    assert code == 0, err
    assert len(json.loads(out)) >= 3
