"""Bad input never stores anything and always says where and why — through the CLI
(file:line, field path) and through the API (document index, field path, 4xx)."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Cli
from tests.support.servers import ServerProcess

GOOD_ORG = "apiVersion: armillary.dev/v1\nkind: Org\nmetadata: {{name: {name}}}\nspec: {{}}\n"


def stack(name: str, body: str) -> str:
    return (
        f"apiVersion: armillary.dev/v1\nkind: Stack\nmetadata:\n  name: {name}\nspec:\n"
        + textwrap.indent(textwrap.dedent(body), "  ")
    )


CASES = {
    # case: (document, line of the problem, words the message must contain)
    "malformed-yaml": (
        "apiVersion: armillary.dev/v1\nkind: [Stack\nmetadata: {}\n",
        3,
        "malformed YAML",
    ),
    "unknown-kind": (
        "apiVersion: armillary.dev/v1\nkind: Gizmo\nmetadata: {name: x}\nspec: {}\n",
        2,
        "unknown kind 'Gizmo'",
    ),
    "unknown-field": (
        stack("{name}", "components:\n  - name: a\n    command: [x]\n    replicaz: 2\n"),
        9,
        "spec.components[0].replicaz: unknown field 'replicaz'; expected one of:",
    ),
    "wrong-type": (
        stack("{name}", "components:\n  - name: a\n    command: [x]\n    replicas: many\n"),
        9,
        "spec.components[0].replicas: input should be a valid integer",
    ),
    "negative-replicas": (
        stack("{name}", "components:\n  - name: a\n    command: [x]\n    replicas: -1\n"),
        9,
        "greater than or equal to 0",
    ),
    "duplicate-components": (
        stack(
            "{name}", "components:\n  - name: a\n    command: [x]\n  - name: a\n    command: [y]\n"
        ),
        9,
        "duplicate component name 'a'",
    ),
    "depends-on-cycle": (
        stack(
            "{name}",
            "components:\n  - name: a\n    command: [x]\n    depends_on: [b]\n"
            "  - name: b\n    command: [y]\n    depends_on: [a]\n",
        ),
        12,
        "depends_on cycle: a -> b -> a",
    ),
    "invalid-semver": (
        stack("{name}", "components:\n  - name: a\n    release: agent@1.2\n"),
        8,
        "expected a semantic version",
    ),
    "invalid-cron": (
        "apiVersion: armillary.dev/v1\nkind: Schedule\nmetadata: {name: {name}}\n"
        "spec:\n  tenant: t\n  component: c\n  cron: '61 * * * *'\n",
        7,
        "spec.cron: expected a valid cron expression",
    ),
    "unknown-time-zone": (
        "apiVersion: armillary.dev/v1\nkind: Schedule\nmetadata: {name: {name}}\n"
        "spec:\n  tenant: t\n  component: c\n  cron: '@daily'\n  time_zone: Mars/Base\n",
        8,
        "spec.time_zone: expected an IANA time zone such as 'UTC' or 'Europe/Paris'",
    ),
    "invalid-inline-cron": (
        "apiVersion: armillary.dev/v1\nkind: Tenant\nmetadata: {name: {name}}\n"
        "spec:\n  org: o\n  stack: s\n  schedules:\n"
        "    - name: nightly\n      component: c\n      cron: '61 * * * *'\n",
        10,
        "spec.schedules[0].cron: expected a valid cron expression",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_reports_file_line_and_path_and_stores_nothing(
    case: str, cli: Cli, server: ServerProcess, tmp_path: Path
) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    org = f"org-{uuid.uuid4().hex[:8]}"
    text, line, words = CASES[case]
    path = tmp_path / f"{case}.yaml"
    # A valid document first: it must not be stored either.
    path.write_text(GOOD_ORG.format(name=org) + "---\n" + text.replace("{name}", name))
    code, _, err = cli("apply", "-f", str(path))
    assert code == 4
    assert f"{path}:{line + 5}:" in err, err
    assert words in err, err
    assert cli("get", "org", org)[0] == 5, "the valid document of a bad set was stored"


@pytest.mark.parametrize(
    ("document", "path", "words"),
    [
        (
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Gizmo",
                "metadata": {"name": "x"},
                "spec": {},
            },
            "kind",
            "unknown kind",
        ),
        (
            {"apiVersion": "v2", "kind": "Org", "metadata": {"name": "x"}, "spec": {}},
            "apiVersion",
            "expected 'armillary.dev/v1'",
        ),
        (
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Org",
                "metadata": {"name": "Bad_Name"},
                "spec": {},
            },
            "metadata.name",
            "DNS-1123",
        ),
        (
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Org",
                "metadata": {"name": "x"},
                "spec": {"colour": 1},
            },
            "spec.colour",
            "unknown field",
        ),
        (
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Stack",
                "metadata": {"name": "x"},
                "spec": {"components": [{"name": "a", "command": ["x"], "replicas": -3}]},
            },
            "spec.components[0].replicas",
            "greater than or equal to 0",
        ),
        (
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Release",
                "metadata": {"name": "agent-1.0"},
                "spec": {
                    "component": "agent",
                    "version": "1.0",
                    "git": {"tag": "agent/v1.0", "commit": "abcdef1"},
                    "artifact": {"process": {"command": ["x"]}},
                },
            },
            "spec.version",
            "semantic version",
        ),
        (
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Schedule",
                "metadata": {"name": "x"},
                "spec": {
                    "tenant": "t",
                    "component": "c",
                    "cron": "* * *",
                    "time_zone": "Nowhere/City",
                },
            },
            "spec.cron",
            "expected 5 cron fields",
        ),
        (
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Schedule",
                "metadata": {"name": "x"},
                "spec": {
                    "tenant": "t",
                    "component": "c",
                    "cron": "@daily",
                    "time_zone": "Nowhere/City",
                },
            },
            "spec.time_zone",
            "expected an IANA time zone",
        ),
        ("not a mapping", "", "expected a mapping"),
    ],
)
def test_api_names_document_and_path_and_stores_nothing(
    document: object, path: str, words: str, server: ServerProcess
) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    good = {"apiVersion": "armillary.dev/v1", "kind": "Org", "metadata": {"name": org}, "spec": {}}
    with server.client() as http:
        response = http.post("/api/v1/apply", json={"documents": [good, document]})
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 422
        matching = [e for e in problem["errors"] if e["path"] == path and e["document"] == 1]
        assert matching, problem
        assert any(words in e["message"] for e in matching), problem
        assert http.get(f"/api/v1/orgs/{org}").status_code == 404


def test_duplicate_documents_in_one_set_are_refused(server: ServerProcess) -> None:
    org: dict[str, Any] = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Org",
        "metadata": {"name": f"o-{uuid.uuid4().hex[:6]}"},
        "spec": {},
    }
    with server.client() as http:
        response = http.post("/api/v1/apply", json={"documents": [org, org]})
        assert response.status_code == 422
        assert "appears twice" in response.json()["errors"][0]["message"]
        assert http.get(f"/api/v1/orgs/{org['metadata']['name']}").status_code == 404


def test_two_megabyte_document_is_refused_everywhere(
    cli: Cli, server: ServerProcess, tmp_path: Path
) -> None:
    name = f"big-{uuid.uuid4().hex[:8]}"
    big = "x" * (2 * 1024 * 1024)
    text = f"apiVersion: armillary.dev/v1\nkind: Org\nmetadata: {{name: {name}}}\nspec:\n  description: {big}\n"
    path = tmp_path / "big.yaml"
    path.write_text(text)
    code, _, err = cli("apply", "-f", str(path))
    assert code == 4
    assert f"{path}:1:" in err and "limit is 1048576 bytes" in err

    document = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Org",
        "metadata": {"name": name},
        "spec": {"description": big},
    }
    with server.client() as http:
        response = http.post("/api/v1/apply", json={"documents": [document]})
        assert response.status_code == 413
        assert "limit is 1048576 bytes" in response.json()["errors"][0]["message"]
        # Over the request limit (8 MiB): refused before the body is read.
        huge = http.post(
            "/api/v1/apply",
            content=b"{" + b" " * (9 * 1024 * 1024) + b"}",
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413
        assert http.get(f"/api/v1/orgs/{name}").status_code == 404


def test_name_or_kind_mismatch_on_put(server: ServerProcess) -> None:
    doc = {"apiVersion": "armillary.dev/v1", "kind": "Org", "metadata": {"name": "one"}, "spec": {}}
    with server.client() as http:
        response = http.put("/api/v1/orgs/other", json=doc)
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"] == "metadata.name"
        response = http.put("/api/v1/stacks/one", json=doc)
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"] == "kind"
        assert http.get("/api/v1/orgs/one").status_code == 404
