"""`-o` the same on every listing command, the exit code of each error class, and the
API docs page with no asset from another host — the real CLI against a real server
and node daemon.

Output formatting does not depend on the store, so the module runs on SQLite only.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from tests.support import documents, tls
from tests.support.api import apply, replicas
from tests.support.cli import Cli, invoke, run
from tests.support.nodes import NodeProcess
from tests.support.ports import free_port
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.only_backend("sqlite")

FORMATS = ("table", "wide", "json", "yaml", "name")
SIGNING = "a signing secret of this module"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FREE_FORM = {"labels", "annotations", "headers", "ports", "env", "input", "detail"}
"""Maps whose keys are data (label keys, HTTP headers, port names), not field names."""
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
NAME_LINE = re.compile(r"^[a-z-]+/\S+$")


@dataclass(frozen=True)
class World:
    tenant: str
    source: str
    version: str


@pytest.fixture(scope="module")
def world(server: ServerProcess, node: NodeProcess) -> Iterator[World]:
    """A tenant with one running replica, one webhook event routed to it, a release."""
    mark = uuid.uuid4().hex[:6]
    w = World(tenant=f"out-{mark}", source=f"gh-{mark}", version=f"1.0.{int(mark, 16) % 1000}")
    repo = f"acme/out-{mark}"
    apply(
        server,
        documents.secret(f"sig-{mark}", {"signing": SIGNING}),
        documents.stack(f"s-{mark}", {"name": "agent", "command": ["sleep", "100000"]}),
        documents.tenant(w.tenant, f"s-{mark}", mark, routing={"github": [repo]}),
        documents.webhook_source(w.source, f"sig-{mark}"),
    )
    wait_for(
        lambda: [
            r for r in replicas(server, w.tenant) if (r["report"] or {}).get("state") == "running"
        ],
        timeout_s=60,
        what="the replica running",
    )
    body = json.dumps({"ref": "refs/heads/main", "repository": {"full_name": repo}}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256="
        + hmac.new(SIGNING.encode(), body, hashlib.sha256).hexdigest(),
    }
    with httpx.Client(base_url=server.url, timeout=30, verify=tls.CONTEXT) as http:
        assert http.post(f"/webhooks/{w.source}", content=body, headers=headers).status_code < 300
    recorded = invoke(
        server, "release", "record", "agent", w.version, "--commit", COMMIT, "--command", "sleep 1"
    )
    assert recorded[0] == 0, recorded
    yield w
    with server.client() as http:
        http.delete(f"/api/v1/tenants/{w.tenant}")


def listings(w: World) -> dict[str, tuple[str, ...]]:
    """Every command that prints a list, with arguments that find something."""
    return {
        "get": ("get", "tenants"),
        "ps": ("ps", w.tenant),
        "nodes": ("nodes",),
        "events": ("events", "--source", w.source),
        "releases": ("release", "list", "agent"),
        "audit": ("audit", "--limit", "3"),
        "tokens": ("token", "list"),
        "runs": ("runs",),
        "schedules": ("schedules",),
        "provision": ("provision", "runs"),
        "rollouts": ("rollout", "status", w.tenant),
        "users": ("users", "list"),
    }


def parse_yaml(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(io.StringIO(text))


def items_of(value: Any) -> list[Any]:
    """The listed documents: a kubectl `List`'s items, or the array itself."""
    if isinstance(value, dict) and value.get("kind") == "List":
        return list(value["items"])
    assert isinstance(value, list), value
    return value


@pytest.mark.parametrize(
    "command",
    [
        "get",
        "ps",
        "nodes",
        "events",
        "releases",
        "audit",
        "tokens",
        "runs",
        "schedules",
        "provision",
        "rollouts",
        "users",
    ],
)
def test_every_listing_command_prints_each_format(world: World, cli: Cli, command: str) -> None:
    args = listings(world)[command]
    shown = {}
    for fmt in FORMATS:
        code, out, err = cli(*args, "-o", fmt)
        assert code == 0, (fmt, out, err)
        shown[fmt] = out
    as_json = items_of(json.loads(shown["json"]))
    as_yaml = items_of(parse_yaml(shown["yaml"]))  # the same documents; usage moves between calls
    assert [sorted(d) for d in as_yaml] == [sorted(d) for d in as_json]
    names = shown["name"].splitlines()
    assert len(names) == len(as_json), shown["name"]
    assert all(NAME_LINE.match(line) for line in names), names
    if as_json:
        table, wide = (re.split(r"\s{2,}", shown[f].splitlines()[0]) for f in ("table", "wide"))
        assert wide[: len(table)] == table and len(wide) > len(table), (table, wide)


def test_a_non_empty_listing_is_named_per_line(world: World, cli: Cli) -> None:
    code, out, _ = cli("get", "tenants", world.tenant, "-o", "name")
    assert (code, out) == (0, f"tenant/{world.tenant}\n")
    code, out, _ = cli("ps", world.tenant, "-o", "name")
    assert code == 0 and re.fullmatch(r"replica/agent-\S+-0\n", out), out
    code, out, _ = cli("events", "--source", world.source, "-o", "name")
    assert code == 0 and len(out.splitlines()) == 1 and out.startswith("event/"), out


def test_release_show_takes_every_format(world: World, cli: Cli) -> None:
    shown = {}
    for fmt in FORMATS:
        code, out, err = cli("release", "show", "agent", world.version, "-o", fmt)
        assert code == 0, (fmt, err)
        shown[fmt] = out
    assert json.loads(shown["json"])["spec"]["version"] == world.version
    assert parse_yaml(shown["yaml"])["spec"]["git"]["commit"] == COMMIT
    assert shown["name"].strip().startswith("release/")
    assert world.version in shown["table"].splitlines()[1]


@pytest.mark.parametrize(
    "args",
    [
        ("get", "tenants"),
        ("ps",),
        ("nodes",),
        ("events",),
        ("release", "list"),
        ("release", "show", "agent", "1.0.0"),
        ("audit",),
        ("runs",),
        ("schedules",),
        ("rollout", "history", "x"),
        ("token", "list"),
    ],
)
def test_an_unknown_output_format_is_a_usage_error_naming_the_choices(
    server: ServerProcess, cli: Cli, args: tuple[str, ...]
) -> None:
    code, out, err = cli(*args, "-o", "bogus")
    assert code == 2, (out, err)
    assert "bogus" in err and all(f"'{fmt}'" in err for fmt in FORMATS), err


def walk(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every (path, key, value) of the field names in `value`, free-form maps left out."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield path, key, item
            if key not in FREE_FORM:
                yield from walk(item, f"{path}.{key}")


@pytest.mark.parametrize("command", ["ps", "nodes", "events"])
def test_json_keys_are_camel_case_and_times_rfc_3339(world: World, cli: Cli, command: str) -> None:
    code, out, _ = cli(*listings(world)[command], "-o", "json")
    assert code == 0
    found = json.loads(out)
    assert found
    times = 0
    for path, key, value in walk(found):
        assert CAMEL.match(key), f"{path}.{key} is not camelCase"
        if key.endswith(("At", "Time")) and value is not None:
            assert isinstance(value, str) and RFC3339.match(value), f"{path}.{key}: {value!r}"
            times += 1
    assert times >= len(found)
    if command == "ps":  # the node's report: its start as a time, not unix seconds
        assert RFC3339.match(found[0]["report"]["startedAt"]), found[0]["report"]
    if command == "nodes":
        assert found[0]["capacity"]["cpuMillicores"] > 0 and "memoryMb" in found[0]["capacity"]


def test_not_found_conflict_and_bad_token_have_their_own_exit_codes(
    server: ServerProcess, cli: Cli
) -> None:
    code, _, err = cli("get", "tenant", "nope")
    assert code == 5 and "not found" in err, err
    name = f"u-{uuid.uuid4().hex[:6]}"
    password = "a long enough password of this test\n"
    assert cli("users", "create", name, "--password-stdin", input=password)[0] == 0
    code, _, err = cli("users", "create", name, "--password-stdin", input=password)
    assert code == 6 and "already exists" in err, err
    env = {"ARMILLARY_URL": server.url, "ARMILLARY_TOKEN": "arm_not_a_token"}
    code, _, err = run("get", "tenants", env=env)
    assert code == 7, err


def test_an_invalid_file_exits_4(server: ServerProcess, cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: armillary.dev/v1\nkind: Tenant\nmetadata: {name: x}\nspec: [\n")
    code, _, err = cli("apply", "-f", str(bad))
    assert code == 4 and str(bad) in err, err


def test_a_server_not_listening_exits_8(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run("--server", url, "get", "tenants", env={"ARMILLARY_HOME": str(tmp_path)})
    assert code == 8 and f"cannot reach the Armillary server at {url}" in err


ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


def test_the_api_docs_page_loads_nothing_from_another_host(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30, verify=tls.CONTEXT) as http:
        page = http.get("/api/v1/docs")
        assert page.status_code == 200
        assert not re.search(r"https?://", page.text), page.text
        assets = ASSET.findall(page.text)
        answers = {url: http.get(url) for url in assets}
    kinds = {url: a.headers["content-type"].split(";")[0] for url, a in answers.items()}
    assert sorted(kinds.values()) == ["image/png", "text/css", "text/javascript"], kinds
    assert all(a.status_code == 200 and a.content for a in answers.values())
    js = next(a for a in answers.values() if "javascript" in a.headers["content-type"])
    assert b"SwaggerUIBundle" in js.content
    csp = page.headers["content-security-policy"]
    assert "http" not in csp, csp
