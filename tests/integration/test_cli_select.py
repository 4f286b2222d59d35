"""Selecting and watching replicas from the CLI, against a real server and a real node
daemon: `-l` label selectors on get, ps, logs and delete (the Kubernetes grammar,
one parser for the CLI and the API); logs across every replica of a component."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.support import documents
from tests.support.api import apply
from tests.support.cli import Cli, invoke
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

EXIT_INVALID = 4
PRINTER = [
    "python3",
    "-u",
    "-c",
    "import os, time\nprint('hello from', os.environ['ARMILLARY_REPLICA'])\n"
    "while True: time.sleep(1)",
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def labelled(name: str, stack: str, labels: dict[str, str]) -> dict[str, Any]:
    tenant = documents.tenant(name, stack)
    tenant["metadata"]["labels"] = labels
    return tenant


def names(cli: Cli, *args: str) -> set[str]:
    code, out, err = cli("get", "tenants", *args, "-o", "json")
    assert code == 0, err
    return {item["metadata"]["name"] for item in json.loads(out)["items"]}


def test_get_selects_with_the_kubernetes_grammar(cli: Cli) -> None:
    stack = unique("sel")
    gold, silver, bare = unique("gold"), unique("silver"), unique("bare")
    mine = {gold, silver, bare}
    apply(
        cli.server,
        documents.stack(stack, documents.agent()),
        labelled(gold, stack, {"tier": "gold", "run": stack}),
        labelled(silver, stack, {"tier": "silver", "run": stack}),
        labelled(bare, stack, {"run": stack}),
    )
    assert names(cli, "-l", f"run={stack},tier!=gold") == {silver, bare}
    assert names(cli, "-l", f"run=={stack}, tier in (gold, silver)") == {gold, silver}
    assert names(cli, "-l", f"run={stack},tier notin (gold)") == {silver, bare}
    assert names(cli, "-l", f"run={stack},tier") == {gold, silver}
    assert names(cli, "-l", f"run={stack},!tier") == {bare}
    assert names(cli, "-l", "tier=gold") & mine == {gold}
    # The API takes the same grammar as the CLI.
    with cli.server.client() as http:
        answer = http.get("/api/v1/tenants", params={"selector": f"run={stack},!tier"})
    assert answer.status_code == 200
    assert [i["metadata"]["name"] for i in answer.json()["items"]] == [bare]


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("tier!gold", "at character 5: expected '=', '==', '!=', 'in (…)'"),
        ("tier in (gold", "at character 14: expected ',' or ')', got the end"),
        ("tier=gold,", "at character 11: expected a label key, got the end"),
    ],
)
def test_a_bad_selector_names_the_place_and_is_invalid_input(
    cli: Cli, selector: str, message: str
) -> None:
    for command in (["get", "tenants"], ["ps"], ["delete", "tenants"]):
        code, _, err = cli(*command, "-l", selector)
        assert code == EXIT_INVALID, (command, err)
        assert message in err
    with cli.server.client() as http:
        answer = http.get("/api/v1/tenants", params={"selector": selector})
    assert answer.status_code == 422
    assert message in answer.text


def test_delete_by_selector_deletes_every_match_and_refuses_an_empty_one(cli: Cli) -> None:
    stack = unique("del")
    doomed, kept = unique("doomed"), unique("kept")
    apply(
        cli.server,
        documents.stack(stack, documents.agent()),
        labelled(doomed + "-a", stack, {"run": stack, "tier": "free"}),
        labelled(doomed + "-b", stack, {"run": stack, "tier": "free"}),
        labelled(kept, stack, {"run": stack, "tier": "gold"}),
    )
    for empty in ("", "  "):
        code, _, err = cli("delete", "tenants", "-l", empty)
        assert code == EXIT_INVALID
        assert "an empty selector would delete every tenant" in err
    assert names(cli, "-l", f"run={stack}") == {doomed + "-a", doomed + "-b", kept}

    code, out, err = cli("delete", "tenants", "-l", f"run={stack},tier!=gold")
    assert code == 0, err
    assert f"tenant/{doomed}-a deleted" in out and f"tenant/{doomed}-b deleted" in out
    assert names(cli, "-l", f"run={stack}") == {kept}
    code, out, _ = cli("delete", "tenants", "-l", f"run={stack},tier!=gold")
    assert code == 0 and "No tenants match" in out


def ps_json(server: ServerProcess, *args: str) -> list[dict[str, Any]]:
    code, out, err = invoke(server, "ps", *args, "-o", "json")
    assert code == 0, err
    found: list[dict[str, Any]] = json.loads(out)
    return found


def running(server: ServerProcess, tenant: str, count: int) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        items = [
            i for i in ps_json(server, tenant) if (i.get("report") or {}).get("state") == "running"
        ]
        return items if len(items) == count else None

    return wait_for(check, timeout_s=60, what=f"{count} replicas of {tenant} running")


def test_ps_selects_replicas_by_their_tenants_labels(node: NodeProcess) -> None:
    server = node.server
    stack = unique("ps")
    gold, silver = unique("gold"), unique("silver")
    printer = {"name": "printer", "command": PRINTER}
    apply(
        server,
        documents.stack(stack, printer),
        labelled(gold, stack, {"tier": "gold", "run": stack}),
        labelled(silver, stack, {"tier": "silver", "run": stack}),
    )
    running(server, gold, 1)
    running(server, silver, 1)
    assert {i["tenant"] for i in ps_json(server, "-l", f"run={stack},tier!=gold")} == {silver}
    code, out, err = invoke(server, "ps", "-l", f"run={stack},tier in (gold)")
    assert code == 0, err
    assert gold in out and silver not in out
