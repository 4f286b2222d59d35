"""Every string a user can store is text: a lone surrogate or a NUL is refused at the
door with its path (422 through the API, file:line through files), a row stored
before that check is still served, and one tenant's spec never stops a node from
serving the others. Real server and node, SQLite and Postgres."""

from __future__ import annotations

import json
import re
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from armillary.auth import keys, secrets
from tests.support.api import apply, replicas
from tests.support.cli import Cli
from tests.support.nodes import NodeProcess
from tests.support.processes import alive
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

API = "armillary.dev/v1"
SLEEPER = ["python3", "-c", "import time; time.sleep(3600)"]


def doc(kind: str, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, **metadata}, "spec": spec}


def put(http: httpx.Client, plural: str, name: str, document: dict[str, Any]) -> httpx.Response:
    # JSON escapes, as a client in another language would send them: `"\ud800"`.
    body = json.dumps(document).encode("ascii")
    return http.put(
        f"/api/v1/{plural}/{name}", content=body, headers={"content-type": "application/json"}
    )


@pytest.fixture(scope="module")
def base(server: ServerProcess) -> None:
    apply(
        server,
        doc("Org", "acme", {}),
        doc("Stack", "sleepy", {"components": [{"name": "main", "command": SLEEPER}]}),
    )


@pytest.fixture(scope="module")
def steady(server: ServerProcess, base: None, node: NodeProcess) -> tuple[str, int]:
    """A tenant whose replica must run on, untouched, whatever the fuzz sends."""
    name = f"steady-{uuid.uuid4().hex[:8]}"
    apply(server, tenant(name))
    return name, wait_for(lambda: running_pid(server, name), timeout_s=60, what="steady running")


def running_pid(server: ServerProcess, tenant: str) -> int | None:
    found = replicas(server, tenant)
    report = (found[0].get("report") or {}) if len(found) == 1 else {}
    if report.get("state") == "running" and report.get("pid"):
        return int(report["pid"])
    return None


def tenant(name: str, **spec: Any) -> dict[str, Any]:
    return doc("Tenant", name, {"org": "acme", "stack": "sleepy", **spec})


BAD = {
    # case: (plural, document, the path the answer must name)
    "tenant-env-surrogate": ("tenants", tenant("{n}", env={"X": "\ud800"}), "spec.env.X"),
    "annotation-key-surrogate": (
        "orgs",
        doc("Org", "{n}", {}, annotations={"n\udc00": "v"}),
        "metadata.annotations",
    ),
    "org-display-name-surrogate": (
        "orgs",
        doc("Org", "{n}", {"display_name": "a\ud800b"}),
        "spec.display_name",
    ),
    "org-display-name-nul": (
        "orgs",
        doc("Org", "{n}", {"display_name": "a\x00b"}),
        "spec.display_name",
    ),
    "tenant-env-nul": ("tenants", tenant("{n}", env={"X": "a\x00"}), "spec.env.X"),
    "annotation-surrogate": (
        "orgs",
        doc("Org", "{n}", {}, annotations={"note": "\udfff"}),
        "metadata.annotations.note",
    ),
    "stack-command-nul": (
        "stacks",
        doc("Stack", "{n}", {"components": [{"name": "a", "command": ["x\x00"]}]}),
        "spec.components[0].command[0]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unstorable_text_is_refused_with_its_path(
    server: ServerProcess, base: None, case: str
) -> None:
    plural, template, path = BAD[case]
    name = f"x-{uuid.uuid4().hex[:8]}"
    document = json.loads(json.dumps(template).replace("{n}", name))
    with server.client() as http:
        answer = put(http, plural, name, document)
        assert answer.status_code == 422, answer.text
        paths = [e["path"] for e in answer.json()["errors"]]
        assert any(p.startswith(path) for p in paths), paths
        assert http.get(f"/api/v1/{plural}/{name}").status_code == 404
        assert http.get(f"/api/v1/{plural}").status_code == 200


def test_plan_of_a_file_with_a_lone_surrogate_names_file_and_line(
    server: ServerProcess, base: None, cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(
        "apiVersion: armillary.dev/v1\nkind: Org\nmetadata:\n  name: surrogate\n"
        'spec:\n  display_name: "bad \\ud800 name"\n'
    )
    code, out, err = cli("plan", "-f", str(path))
    assert code != 0
    assert f"{path}:6: spec.display_name: contains a lone surrogate (U+D800)" in err, out + err


# Postgres never stored a lone surrogate (it refuses one in JSON): the tests of rows
# stored before the check exist for SQLite only.
sqlite_only = pytest.mark.only_backend("sqlite")


def sqlite_file(server: ServerProcess) -> Path:
    assert server.database_url is None, "a test of SQLite's file"
    return server.home / "armillary.db"


def corrupt(server: ServerProcess, table: str, marker: str) -> None:
    """Put a lone surrogate where `marker` is in `table`'s JSON, as a server before
    the check at the door could have stored it."""
    with sqlite3.connect(sqlite_file(server)) as conn:
        column = "spec"
        changed = conn.execute(
            f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
            (marker, "\\ud800"),
        ).rowcount
    assert changed >= 1


@sqlite_only
def test_a_row_stored_before_the_check_is_still_served(server: ServerProcess, base: None) -> None:
    name = f"old-{uuid.uuid4().hex[:8]}"
    marker = f"marker{uuid.uuid4().hex}"
    apply(server, doc("Org", name, {"display_name": marker}))
    corrupt(server, "resources", marker)
    with server.client() as http:
        listed = http.get("/api/v1/orgs")
        assert listed.status_code == 200, listed.text
        shown = http.get(f"/api/v1/orgs/{name}")
        assert shown.status_code == 200, shown.text
    assert shown.json()["spec"]["display_name"] == "\ufffd"


@sqlite_only
def test_one_tenants_bad_row_never_stops_the_node_serving_the_others(
    server: ServerProcess, base: None, node: NodeProcess
) -> None:
    good, bad, later = (f"{p}-{uuid.uuid4().hex[:8]}" for p in ("good", "bad", "later"))
    marker = f"marker{uuid.uuid4().hex}"
    apply(server, tenant(good), tenant(bad, env={"NOTE": marker}))
    pid = wait_for(lambda: running_pid(server, good), timeout_s=60, what="good running")
    wait_for(lambda: running_pid(server, bad), timeout_s=60, what="bad running")
    corrupt(server, "allocations", marker)
    corrupt(server, "resources", marker)
    apply(server, tenant(later))  # the node's set changes: the hub sends it again
    wait_for(lambda: running_pid(server, later), timeout_s=60, what="later running")
    assert node.connected()
    assert node.process is not None and node.process.poll() is None
    assert running_pid(server, good) == pid
    with server.client() as http:
        assert http.get("/api/v1/tenants").status_code == 200


# Every string field of every kind: a valid document per kind, and the path of each
# string in it (dict keys included, as a path ending in a key marker).
KEY = object()


def samples(suffix: str) -> list[tuple[str, dict[str, Any]]]:
    component = {
        "name": "main",
        "command": SLEEPER,
        "args": ["a"],
        "cwd": "/tmp",
        "env": {"E": "v"},
        "ports": [{"name": "http"}],
        "health_check": {"http": {"path": "/h", "port": "http"}},
        "description": "d",
    }
    meta = {"labels": {"team": "a"}, "annotations": {"note": "n"}}
    return [
        ("orgs", doc("Org", f"fo-{suffix}", {"display_name": "d", "description": "d"}, **meta)),
        ("stacks", doc("Stack", f"fs-{suffix}", {"components": [component], "description": "d"})),
        (
            "tenants",
            doc(
                "Tenant",
                f"ft-{suffix}",
                {
                    "org": "acme",
                    "stack": "sleepy",
                    "display_name": "d",
                    "env": {"E": "v"},
                    "routing": {"slack": ["T1"]},
                    "overrides": {"main": {"env": {"O": "v"}}},
                },
                **meta,
            ),
        ),
        (
            "schedules",
            doc(
                "Schedule",
                f"fc-{suffix}",
                {"tenant": "acme-t", "component": "main", "cron": "*/5 * * * *"},
            ),
        ),
        (
            "webhooksources",
            doc(
                "WebhookSource",
                f"fw-{suffix}",
                {
                    "type": "generic-hmac",
                    "secrets": [{"name": "hook", "key": "value"}],
                    "routing": {"key_space": "gh", "pointer": "/team"},
                    "hmac": {"header": "X-Sig", "prefix": "sha256=", "timestamp_header": "X-T"},
                },
            ),
        ),
        (
            "releases",
            doc(
                "Release",
                "main-1.0.0",
                {
                    "component": "main",
                    "version": "1.0.0",
                    "git": {"tag": "main/v1.0.0", "commit": "abcdef1", "repository": "r"},
                    "artifact": {"process": {"command": ["run"], "cwd": "app"}},
                    "notes": "n",
                },
            ),
        ),
        ("secrets", doc("Secret", f"fk-{suffix}", {"data": {"TOKEN": "v"}}, **meta)),
    ]


def string_paths(value: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, str):
        yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*loc, key, KEY)
            yield from string_paths(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_paths(item, (*loc, index))


def replaced(document: dict[str, Any], loc: tuple[Any, ...], text: str) -> dict[str, Any]:
    out = json.loads(json.dumps(document))
    node = out
    for part in loc[:-2] if loc[-1] is KEY else loc[:-1]:
        node = node[part]
    if loc[-1] is KEY:
        node[text] = node.pop(loc[-2])
    else:
        node[loc[-1]] = text
    return out


SAMPLES = samples("x")
TARGETS = [(i, loc) for i, (_p, d) in enumerate(SAMPLES) for loc in string_paths(d)]
WEIRD = st.text(
    alphabet=st.one_of(
        st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF),
        st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d", "\ufffd", "\U0001f600"]),
    ),
    max_size=12,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(target=st.sampled_from(TARGETS), value=WEIRD)
def test_fuzz_any_text_in_any_string_field_never_breaks_the_api_nor_the_node(
    server: ServerProcess,
    node: NodeProcess,
    steady: tuple[str, int],
    target: tuple[int, tuple[Any, ...]],
    value: str,
) -> None:
    index, loc = target
    plural, template = SAMPLES[index]
    document = replaced(template, loc, value)
    name = template["metadata"]["name"]
    with server.client() as http:
        answer = put(http, plural, name, document)
        assert answer.status_code < 500, answer.text
        assert json.loads(answer.content)  # an answer that encodes
        for path in (f"/api/v1/{plural}", f"/api/v1/{plural}/{name}", "/api/v1/tenants"):
            read = http.get(path)
            assert read.status_code in (200, 404), read.text
    assert node.process is not None and node.process.poll() is None
    name, pid = steady
    assert running_pid(server, name) == pid


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(target=st.sampled_from(TARGETS), value=WEIRD)
def test_fuzz_any_text_in_any_string_field_of_a_file_is_planned_or_refused_at_its_line(
    server: ServerProcess, base: None, cli: Cli, target: tuple[int, tuple[Any, ...]], value: str
) -> None:
    index, loc = target
    document = replaced(SAMPLES[index][1], loc, value)
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "doc.yaml"
        # JSON is YAML; its escapes (`"\ud800"`) are read back as the same characters.
        path.write_text(json.dumps(document, indent=1))
        code, out, err = cli("plan", "-f", str(path))
    if code != 0:
        assert re.search(rf"{re.escape(str(path))}:\d+: ", err), out + err


@sqlite_only
def test_a_secret_value_no_frame_can_carry_is_held_back_and_the_rest_served(
    server: ServerProcess, base: None, node: NodeProcess
) -> None:
    """The hub's own guard: a value that decrypts to text no frame can encode (sealed
    by something other than this server's door) marks that one replica InvalidSpec
    when the hub next sends it — here in the whole set a new session starts with —
    and the node's session and every other tenant's replicas go on."""
    database = sqlite_file(server)
    good, bad, later = (f"{p}-{uuid.uuid4().hex[:8]}" for p in ("good", "bad", "later"))
    secret = f"sec-{uuid.uuid4().hex[:8]}"
    apply(server, doc("Secret", secret, {"tenant": bad, "data": {"TOKEN": "fine"}}))
    apply(server, tenant(good), tenant(bad, secrets=[{"name": secret}]))
    pid = wait_for(lambda: running_pid(server, good), timeout_s=60, what="good running")
    bad_pid = wait_for(lambda: running_pid(server, bad), timeout_s=60, what="bad running")
    ring = keys.load(value=None, previous=None, home=server.home, production=False)
    token = secrets.Vault.of(ring).ciphers[0].encrypt(b'{"TOKEN":"\\ud800"}').decode()
    with sqlite3.connect(database) as conn:
        changed = conn.execute(
            "UPDATE secret_values SET ciphertext = ? WHERE uid ="
            " (SELECT uid FROM resources WHERE kind = 'Secret' AND name = ?)",
            (token, secret),
        ).rowcount
    assert changed == 1
    # A new session: the daemon killed (its replicas keep running) and started again;
    # it adopts them, and the hub sends it its whole set, resolved again.
    assert node.process is not None
    node.process.kill()
    node.process.wait(timeout=30)
    node.start()
    apply(server, tenant(later))  # and the node's set changes after it: a delta
    wait_for(lambda: running_pid(server, later), timeout_s=60, what="later running")

    def held_back() -> dict[str, Any] | None:
        reports = [r.get("report") or {} for r in replicas(server, bad)]
        return next((r for r in reports if r.get("reason") == "InvalidSpec"), None)

    wait_for(held_back, timeout_s=30, what="bad marked InvalidSpec")
    # The node stops the replica it is no longer sent, reporting it as it goes: the
    # mark is what stays.
    wait_for(lambda: not alive(bad_pid), timeout_s=30, what="bad's process stopped")
    report = wait_for(held_back, timeout_s=30, what="bad still marked InvalidSpec")
    assert "env.TOKEN" in report["message"]
    assert "\ud800" not in json.dumps(report, ensure_ascii=False)
    assert node.connected()
    assert node.process is not None and node.process.poll() is None
    assert running_pid(server, good) == pid


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/agents/run", {"tenant": "acme-t", "input": {"x": ["\ud800"]}}),
        ("/api/v1/agents/run", {"tenant": "acme-t", "input": {"x\x00": 1}}),
        ("/api/v1/tokens", {"role": "viewer", "description": "a\ud800"}),
        ("/api/v1/tokens", {"role": "viewer", "description": "a\x00b"}),
        (
            "/api/v1/provision/tenants",
            {"org": "acme", "tenant": "p", "stack": "sleepy", "idempotency_key": "k\x00"},
        ),
        (
            "/api/v1/provision/tenants",
            {"org": "acme", "tenant": "p", "stack": "sleepy", "display_name": "\udfff"},
        ),
    ],
)
def test_request_bodies_that_are_stored_refuse_unstorable_text(
    server: ServerProcess, base: None, path: str, body: dict[str, Any]
) -> None:
    with server.client() as http:
        answer = http.post(
            path, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
        for listing in ("/api/v1/runs", "/api/v1/tokens", "/api/v1/provision/runs"):
            assert http.get(listing).status_code == 200
