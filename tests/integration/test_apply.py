"""apply / plan / get / describe / delete through the real CLI against a real server
process, on SQLite and on Postgres."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.support.cli import Cli
from tests.support.servers import ServerProcess


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def stack_yaml(name: str, *, replicas: int = 1, extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: armillary.dev/v1
        kind: Stack
        metadata:
          name: {name}
        spec:
          components:
            - name: agent
              command: [python3, -m, http.server]
              replicas: {replicas}
              ports: [{{name: http}}]
              health_check: {{http: {{path: /, port: http}}}}
            - name: reader
              command: [python3, reader.py]
              depends_on: [agent]
        {extra}"""
    )


def tenant_yaml(name: str, stack: str, *, org: str = "acme", labels: str = "{}") -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: armillary.dev/v1
        kind: Tenant
        metadata:
          name: {name}
          labels: {labels}
        spec:
          org: {org}
          stack: {stack}
          routing:
            github: [acme/{name}]
        """
    )


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def get_json(cli: Cli, kind: str, name: str) -> dict[str, Any]:
    code, out, err = cli("get", kind, name, "-o", "json")
    assert code == 0, err
    return json.loads(out)


def test_apply_twice_is_unchanged_and_plan_after_apply_is_empty(cli: Cli, tmp_path: Path) -> None:
    stack = unique("stack")
    tenant = unique("tenant")
    path = write(tmp_path / "s.yaml", stack_yaml(stack) + "---\n" + tenant_yaml(tenant, stack))

    code, out, err = cli("apply", "-f", path)
    assert code == 0, err
    assert f"stack/{stack} created" in out
    assert f"tenant/{tenant} created" in out
    first = get_json(cli, "tenant", tenant)["metadata"]
    stack_first = get_json(cli, "stack", stack)["metadata"]

    code, out, _ = cli("apply", "-f", path)
    assert code == 0
    assert f"stack/{stack} unchanged" in out
    assert f"tenant/{tenant} unchanged" in out
    again = get_json(cli, "tenant", tenant)["metadata"]
    assert again["generation"] == first["generation"] == 1
    # The tenant controller writes the tenant's status at any moment (which moves its
    # resourceVersion); nothing writes a stack but apply, so its version shows that
    # the second apply wrote nothing.
    assert (
        get_json(cli, "stack", stack)["metadata"]["resourceVersion"]
        == (stack_first["resourceVersion"])
    )

    code, out, _ = cli("plan", "-f", path, "--detailed-exitcode")
    assert code == 0
    assert "No changes." in out


def test_spec_change_moves_generation_but_label_change_does_not(cli: Cli, tmp_path: Path) -> None:
    stack = unique("stack")
    path = tmp_path / "s.yaml"
    cli("apply", "-f", write(path, stack_yaml(stack, replicas=1)))

    write(path, stack_yaml(stack, replicas=3))
    code, out, _ = cli("plan", "-f", str(path), "--detailed-exitcode")
    assert code == 3
    assert f"~ update stack/{stack}" in out
    assert "spec.components[name=agent].replicas: 1 → 3" in out

    code, out, _ = cli("apply", "-f", str(path))
    assert f"stack/{stack} configured" in out
    meta = get_json(cli, "stack", stack)["metadata"]
    assert (meta["generation"], meta["resourceVersion"]) == (2, "2")

    labelled = stack_yaml(stack, replicas=3).replace(
        f"name: {stack}\n", f"name: {stack}\n  labels: {{team: core}}\n", 1
    )
    cli("apply", "-f", write(path, labelled))
    meta = get_json(cli, "stack", stack)["metadata"]
    assert (meta["generation"], meta["resourceVersion"]) == (2, "3")
    assert meta["labels"] == {"team": "core"}


def test_spelling_out_a_default_is_not_a_change(cli: Cli, tmp_path: Path) -> None:
    stack = unique("stack")
    cli("apply", "-f", write(tmp_path / "a.yaml", stack_yaml(stack)))
    explicit = stack_yaml(stack).replace(
        "depends_on: [agent]", "depends_on: [agent]\n      type: service\n      exposure: internal"
    )
    code, out, _ = cli("apply", "-f", write(tmp_path / "b.yaml", explicit))
    assert code == 0
    assert f"stack/{stack} unchanged" in out


def test_get_list_describe_and_selector(cli: Cli, tmp_path: Path) -> None:
    stack = unique("stack")
    gold, silver = unique("gold"), unique("silver")
    docs = "---\n".join(
        [
            stack_yaml(stack),
            tenant_yaml(gold, stack, labels="{tier: gold}"),
            tenant_yaml(silver, stack, labels="{tier: silver}"),
        ]
    )
    cli("apply", "-f", write(tmp_path / "all.yaml", docs))

    code, out, _ = cli("get", "tenants", "-l", "tier=gold")
    assert code == 0
    assert out.splitlines()[0].split() == [
        "NAME",
        "ORG",
        "STACK",
        "READY",
        "STATUS",
        "GENERATION",
        "AGE",
    ]
    assert gold in out and silver not in out

    code, out, _ = cli("get", "tenant", gold, "-o", "yaml")
    assert code == 0
    doc = YAML(typ="safe").load(out)
    assert doc["spec"]["stack"] == stack
    assert doc["metadata"]["labels"] == {"tier": "gold"}

    code, out, _ = cli("describe", "stack", stack)
    assert code == 0
    assert "Name:" in out and stack in out and "Spec:" in out and "agent" in out


def test_delete_then_get_is_not_found(cli: Cli, tmp_path: Path) -> None:
    stack = unique("stack")
    cli("apply", "-f", write(tmp_path / "s.yaml", stack_yaml(stack)))
    code, out, _ = cli("delete", "stack", stack)
    assert code == 0 and f"stack/{stack} deleted" in out
    code, _, err = cli("get", "stack", stack)
    assert code == 5
    assert "not found" in err
    code, _, err = cli("delete", "stack", stack)
    assert code == 5 and "not found" in err


def test_prune_deletes_only_what_the_set_no_longer_names(cli: Cli, tmp_path: Path) -> None:
    directory = tmp_path / "tenants"
    directory.mkdir()
    stack = unique("stack")
    keep, drop = unique("keep"), unique("drop")
    write(directory / "0-stack.yaml", stack_yaml(stack))
    write(directory / "1-keep.yaml", tenant_yaml(keep, stack))
    write(directory / "2-drop.yaml", tenant_yaml(drop, stack))
    code, _, err = cli("apply", "-f", str(directory))
    assert code == 0, err
    (directory / "2-drop.yaml").unlink()

    code, out, _ = cli("plan", "-f", str(directory))
    assert "No changes." in out  # without --prune nothing is deleted
    code, out, _ = cli("plan", "-f", str(directory), "--prune")
    assert f"- delete tenant/{drop}" in out
    assert get_json(cli, "tenant", drop)  # plan wrote nothing

    code, out, _ = cli("apply", "-f", str(directory), "--prune")
    assert code == 0
    assert f"tenant/{drop} deleted" in out
    assert cli("get", "tenant", drop)[0] == 5
    assert get_json(cli, "tenant", keep)


def test_apply_from_stdin(cli: Cli) -> None:
    stack = unique("stack")
    code, out, err = cli("apply", "-f", "-", input=stack_yaml(stack))
    assert code == 0, err
    assert f"stack/{stack} created" in out


def test_stale_resource_version_is_a_conflict(
    cli: Cli, server: ServerProcess, tmp_path: Path
) -> None:
    stack = unique("stack")
    cli("apply", "-f", write(tmp_path / "s.yaml", stack_yaml(stack)))
    code, exported, _ = cli("get", "stack", stack, "-o", "yaml")
    seen = YAML(typ="safe").load(exported)
    assert seen["metadata"]["resourceVersion"] == "1"

    # Someone else changes it.
    cli("apply", "-f", write(tmp_path / "other.yaml", stack_yaml(stack, replicas=2)))

    # Our edit of the exported copy still names resourceVersion 1.
    seen["spec"]["components"][0]["replicas"] = 5
    yaml = YAML()
    with (tmp_path / "stale.yaml").open("w") as out:
        yaml.dump(seen, out)
    code, _, err = cli("apply", "-f", str(tmp_path / "stale.yaml"))
    assert code == 6
    assert "resourceVersion 1" in err and "holds 2" in err
    assert get_json(cli, "stack", stack)["spec"]["components"][0]["replicas"] == 2

    with server.client() as http:
        response = http.put(f"/api/v1/stacks/{stack}", json=seen)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"


def test_plan_and_apply_take_yaml_text_with_errors_naming_the_line(cli: Cli) -> None:
    """The dashboard's plan page sends YAML as it was pasted (`yaml`): read as a file
    is, so a bad field's error names its line, and applying it writes the documents."""
    stack = unique("st")
    text = stack_yaml(stack)
    with cli.server.client() as http:
        planned = http.post("/api/v1/plan", json={"yaml": text})
        assert planned.status_code == 200, planned.text
        assert [(c["action"], c["name"]) for c in planned.json()["changes"]] == [("create", stack)]
        broken = text.replace("replicas: 1", "replicas: many")
        refused = http.post("/api/v1/plan", json={"yaml": broken})
        assert refused.status_code == 422
        issue = refused.json()["errors"][0]
        assert issue["path"] == "spec.components[0].replicas" and issue["line"] == 9
        malformed = http.post("/api/v1/apply", json={"yaml": "kind: [unclosed"})
        assert malformed.status_code == 422 and "malformed YAML" in malformed.text
        applied = http.post("/api/v1/apply", json={"yaml": text})
        assert applied.status_code == 200, applied.text
        assert http.get(f"/api/v1/stacks/{stack}").status_code == 200
        # YAML is capped well under the body's cap: a large paste is refused, named
        padded = text + "#" * (1024 * 1024)
        large = http.post("/api/v1/plan", json={"yaml": padded})
        assert large.status_code == 422, large.text
        assert "yaml" in large.text and "1048576" in large.text
