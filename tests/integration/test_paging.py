"""Lists of resources in pages: `?limit=` and `metadata.continue`, as Kubernetes does.

Pages of tenants listed through `continue` equal the whole list, none twice, with a
label selector too, and stay so while tenants are created between pages; a `continue`
that could not be a name is refused naming it.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.support import api
from tests.support.documents import ACME, tenant
from tests.support.servers import ServerProcess

STACK = {
    "apiVersion": "armillary.dev/v1",
    "kind": "Stack",
    "metadata": {"name": "paged"},
    "spec": {"components": [{"name": "app", "command": ["true"], "replicas": 0}]},
}


def _labelled(name: str, tier: str) -> dict[str, Any]:
    document = tenant(name, "paged")
    document["metadata"]["labels"] = {"tier": tier}
    return document


def _pages(server: ServerProcess, limit: int, **params: str) -> list[list[str]]:
    pages: list[list[str]] = []
    token: str | None = None
    with server.client() as http:
        while True:
            query = {"limit": str(limit), **params, **({"continue": token} if token else {})}
            response = http.get("/api/v1/tenants", params=query)
            assert response.status_code == 200, response.text
            body = response.json()
            names = [item["metadata"]["name"] for item in body["items"]]
            assert len(names) <= limit
            pages.append(names)
            token = (body.get("metadata") or {}).get("continue")
            if token is None:
                return pages


def test_pages_of_tenants_equal_the_whole_list_none_twice(server: ServerProcess) -> None:
    mark = uuid.uuid4().hex[:6]
    names = [f"pg-{mark}-{i:02d}" for i in range(11)]
    api.apply(
        server,
        ACME,
        STACK,
        *(_labelled(n, "gold" if i % 3 else "free") for i, n in enumerate(names)),
    )
    with server.client() as http:
        whole = [i["metadata"]["name"] for i in http.get("/api/v1/tenants").json()["items"]]
    pages = _pages(server, 4)
    listed = [name for page in pages for name in page]
    assert listed == whole  # in name order, each once
    assert len(pages) == -(-len(whole) // 4)
    gold = [n for i, n in enumerate(names) if i % 3]
    selected = [n for page in _pages(server, 3, selector="tier=gold") for n in page]
    assert [n for n in selected if n.startswith(f"pg-{mark}")] == gold


def test_pages_stay_whole_while_tenants_are_created(server: ServerProcess) -> None:
    mark = uuid.uuid4().hex[:6]
    first = [f"pq-{mark}-b{i}" for i in range(6)]
    api.apply(server, ACME, STACK, *(tenant(n, "paged") for n in first))
    seen: list[str] = []
    token: str | None = None
    created: list[str] = []
    with server.client() as http:
        while True:
            query = {"limit": "2", "selector": "", **({"continue": token} if token else {})}
            body = http.get("/api/v1/tenants", params=query).json()
            seen += [i["metadata"]["name"] for i in body["items"]]
            if not created:  # between the first pages: one before the cursor, one after
                created = [f"pq-{mark}-a", f"pq-{mark}-z"]
                api.apply(server, *(tenant(n, "paged") for n in created))
            token = (body.get("metadata") or {}).get("continue")
            if token is None:
                break
    mine = [n for n in seen if n.startswith(f"pq-{mark}")]
    assert len(mine) == len(set(mine))  # none twice
    assert set(first) <= set(mine)  # every tenant there throughout, listed
    assert f"pq-{mark}-z" in mine  # created after the cursor: listed too


def test_a_continue_that_is_not_a_token_is_refused_naming_it(server: ServerProcess) -> None:
    with server.client() as http:
        for bad in ("%%%", "@@"):
            response = http.get("/api/v1/tenants", params={"limit": "2", "continue": bad})
            assert response.status_code == 422, response.text
            assert "continue" in response.text
        response = http.get("/api/v1/tenants", params={"limit": "0"})
        assert response.status_code == 422 and "limit" in response.text
