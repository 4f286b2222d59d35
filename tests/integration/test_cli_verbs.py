"""Mistakes refused and deletes guarded (issue 15, item 8), and the everyday verbs
(item 7): through the real CLI and the API of a real server, with a real node daemon
where replicas matter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

from armillary import __version__
from armillary.cli.console import (
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
)
from armillary.cli.overrides import RESTARTED_AT
from tests.support import documents as docs
from tests.support.api import apply, replicas
from tests.support.cli import Cli, run
from tests.support.nodes import NodeProcess
from tests.support.processes import processes_marked
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def two_components(name: str) -> dict[str, Any]:
    return docs.stack(name, docs.agent(), {"name": "worker", "command": ["python3", "-c", "pass"]})


# --- item 8: mistakes refused -------------------------------------------------------


def test_override_of_a_component_the_stack_lacks_is_refused_with_a_suggestion(
    server: ServerProcess, cli: Cli
) -> None:
    stack, tenant = unique("s"), unique("t")
    bad = docs.tenant(tenant, stack, overrides={"agnet": {"replicas": 2}})
    with server.client() as http:
        for route in ("/api/v1/apply", "/api/v1/plan"):
            # The Stack in the same set counts, as a stored one does.
            answer = http.post(route, json={"documents": [two_components(stack), bad]})
            assert answer.status_code == 422, answer.text
            [issue] = answer.json()["errors"]
            assert issue["path"] == "spec.overrides.agnet" and issue["document"] == 1
            assert "did you mean 'agent'?" in issue["message"]
        assert http.get(f"/api/v1/stacks/{stack}").status_code == 404  # nothing stored
    apply(server, two_components(stack))
    with server.client() as http:
        answer = http.put(f"/api/v1/tenants/{tenant}", json=bad)
        assert answer.status_code == 422, answer.text
        nothing_close = docs.tenant(tenant, stack, overrides={"zzz": {"replicas": 1}})
        answer = http.post("/api/v1/apply", json={"documents": [nothing_close]})
        assert "(it has: agent, worker)" in answer.json()["errors"][0]["message"]
        secret_to = docs.tenant(tenant, stack, secrets=[{"name": "x", "components": ["wroker"]}])
        answer = http.post(
            "/api/v1/plan", json={"documents": [docs.secret("x", {"K": "v"}), secret_to]}
        )
        paths = {e["path"]: e["message"] for e in answer.json()["errors"]}
        assert "did you mean 'worker'?" in paths["spec.secrets[0].components[0]"], paths
        good = docs.tenant(tenant, stack, overrides={"worker": {"replicas": 0}})
        assert http.post("/api/v1/plan", json={"documents": [good]}).status_code == 200
    code, _, err = cli("apply", "-f", "-", input=json.dumps(bad))
    assert code == EXIT_INVALID
    assert "spec.overrides.agnet" in err and "did you mean 'agent'?" in err
    code, _, err = cli("plan", "-f", "-", input=json.dumps(bad))
    assert code == EXIT_INVALID and "did you mean 'agent'?" in err


def test_deleting_an_org_or_stack_in_use_is_refused_unless_cascade(
    server: ServerProcess, cli: Cli
) -> None:
    org, stack = unique("o"), unique("s")
    tenants = sorted(unique("t") for _ in range(12))
    apply(
        server,
        docs.org(org),
        two_components(stack),
        *(docs.tenant(t, stack, org=org) for t in tenants),
    )
    with server.client() as http:
        refused = http.delete(f"/api/v1/stacks/{stack}")
        assert refused.status_code == 409, refused.text
        detail = refused.json()["detail"]
        assert "used by 12 tenant(s)" in detail and ", ".join(tenants[:10]) in detail
        assert "and 2 more" in detail and tenants[11] not in detail
        assert http.get(f"/api/v1/stacks/{stack}").status_code == 200
        assert http.delete(f"/api/v1/orgs/{org}").status_code == 409
    code, _, err = cli("delete", "org", org)
    assert (
        code == EXIT_CONFLICT and f"org/{org} is used by 12 tenant(s)" in err and "--cascade" in err
    )
    # Cascade through the API for the stack: its tenants go first, in one transaction.
    with server.client() as http:
        gone = http.delete(f"/api/v1/stacks/{stack}", params={"cascade": "true"})
        assert gone.status_code == 200, gone.text
        assert http.get(f"/api/v1/tenants/{tenants[0]}").status_code == 404
        # Each tenant the cascade deleted has its own audit row, saying why.
        rows = http.get("/api/v1/audit", params={"kind": "Tenant", "name": tenants[0]}).json()
        [row] = [r for r in rows["items"] if r["outcome"] == "deleted"]
        assert row["detail"] == {"cascade": f"stack/{stack}"}, row
    code, out, err = cli("delete", "org", org)  # nobody uses it any more
    assert code == 0 and f"org/{org} deleted" in out, err
    # And through the CLI, for an org with users.
    org2, stack2, user = unique("o"), unique("s"), unique("t")
    apply(server, docs.org(org2), two_components(stack2), docs.tenant(user, stack2, org=org2))
    code, out, err = cli("delete", "org", org2, "--cascade")
    assert code == 0 and f"org/{org2} deleted" in out, err
    assert cli("get", "tenant", user)[0] == EXIT_NOT_FOUND
    assert cli("get", "stack", stack2)[0] == 0  # a stack is not the org's to delete


def test_prune_that_would_delete_a_stack_in_use_is_refused(server: ServerProcess, cli: Cli) -> None:
    used, other, user = unique("s"), unique("s"), unique("t")
    apply(server, two_components(used), docs.tenant(user, used))
    # A set of Stacks alone, with --prune: every stored Stack it does not name would go,
    # `used` among them, while its tenant stays.
    only_other = json.dumps(two_components(other))
    for verb in ("plan", "apply"):
        code, _, err = cli(verb, "--prune", "-f", "-", input=only_other)
        assert code == EXIT_CONFLICT and "prune would delete stack/" in err, (verb, err)
        assert "tenant(s)" in err
    assert cli("get", "stack", used)[0] == 0
    assert cli("get", "stack", other)[0] == EXIT_NOT_FOUND  # all or nothing


def test_unknown_kinds_get_a_suggestion_or_the_command_to_use(cli: Cli) -> None:
    for verb in (("get",), ("describe",), ("delete",)):
        args = (*verb, "tennants") if verb == ("get",) else (*verb, "tennants", "x")
        code, _, err = cli(*args)
        assert code == EXIT_INVALID and "did you mean 'tenants'?" in err, err
    code, _, err = cli("get", "nodes")
    assert code == EXIT_INVALID and "armillary nodes" in err
    for word in ("pods", "replicas"):
        code, _, err = cli("get", word)
        assert code == EXIT_INVALID and "armillary ps" in err


def test_ps_and_logs_of_a_tenant_that_does_not_exist_say_so(cli: Cli) -> None:
    code, out, err = cli("ps", "nope")
    assert code == EXIT_NOT_FOUND and "tenant 'nope' does not exist" in err, (out, err)
    code, _, err = cli("logs", "nope/agent")
    assert code == EXIT_NOT_FOUND and "tenant 'nope' does not exist" in err


# --- item 7: everyday verbs ---------------------------------------------------------


def test_apply_dry_run_is_plan_and_changes_nothing(server: ServerProcess, cli: Cli) -> None:
    org = unique("o")
    document = json.dumps(docs.org(org))
    code, out, err = cli("apply", "--dry-run", "-f", "-", input=document)
    assert code == 0, err
    assert cli("plan", "-f", "-", input=document)[1] == out
    assert f"+ create org/{org}" in out and "Plan: 1 to create" in out
    with server.client() as http:
        assert http.get(f"/api/v1/orgs/{org}").status_code == 404


def test_apply_wait_exits_1_when_a_tenant_fails_and_8_when_time_runs_out(
    server: ServerProcess, cli: Cli
) -> None:
    # No such stack: the tenant's status says so, and that is final.
    orphan = unique("t")
    code, out, err = cli(
        "apply", "--wait", "-f", "-", input=json.dumps(docs.tenant(orphan, unique("none")))
    )
    assert code == EXIT_ERROR, (out, err)
    assert f"tenant/{orphan} created" in out
    assert f"tenant/{orphan} failed: stack" in err and "does not exist" in err
    # A replica no node takes (there is no node here) is waited for, until the timeout.
    stack, pending = unique("s"), unique("t")
    documents = [docs.stack(stack, docs.agent()), docs.tenant(pending, stack)]
    code, _, err = cli(
        "apply", "--wait", "--timeout", "1s", "-f", "-", input=json.dumps(documents[0])
    )
    assert code == 0, err  # nothing to wait for: the set has no tenant
    code, _, err = cli(
        "apply", "--wait", "--timeout", "1s", "-f", "-", input=json.dumps(documents[1])
    )
    assert code == EXIT_UNAVAILABLE, err
    assert f"timed out after 1s waiting for {pending}" in err
    assert cli("apply", "--wait", "--timeout", "soon", "-f", "-", input="{}")[0] == EXIT_INVALID


def test_restart_of_a_whole_tenant_stamps_its_env_over_a_component_restart(
    server: ServerProcess, cli: Cli
) -> None:
    stack, name = unique("s"), unique("t")
    earlier = {"agent": {"replicas": 2, "env": {RESTARTED_AT: "then", "KEEP": "1"}}}
    apply(server, two_components(stack), docs.tenant(name, stack, overrides=earlier))
    code, out, err = cli("restart", name)
    assert code == 0 and "every component" in out, err
    with server.client() as http:
        spec = http.get(f"/api/v1/tenants/{name}").json()["spec"]
    assert spec["env"][RESTARTED_AT] != "then"
    # The component's own stamp would win over the tenant's: it is gone, the rest kept.
    assert spec["overrides"]["agent"] == {"replicas": 2, "env": {"KEEP": "1"}}
    for args in (("restart", "nope/agent"), ("scale", "nope/agent", "--replicas", "1")):
        code, _, err = cli(*args)
        assert code == EXIT_NOT_FOUND and "not found" in err, (args, err)
    assert cli("scale", name, "--replicas", "1")[0] == EXIT_INVALID  # TENANT/COMPONENT it must be


def test_version_shows_client_and_server(cli: Cli) -> None:
    code, out, err = cli("version")
    assert code == 0, err
    assert f"Client: armillary {__version__}" in out
    assert f"Server: armillary {__version__} (API armillary.dev/v1" in out
    code, out, _ = cli("version", "-o", "json")
    assert json.loads(out)["server"]["apiVersion"] == "armillary.dev/v1"
    code, out, _ = run("version", "--client", env={"ARMILLARY_URL": None})
    assert code == 0 and "Server:" not in out


def test_shell_completion_is_offered_and_completes_commands() -> None:
    """As a shell runs it: a process (the completion options are built when the CLI
    loads, and the shell is named rather than detected from the parent process)."""
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    script = subprocess.run(
        [sys.executable, "-m", "armillary", "--show-completion", "bash"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert script.returncode == 0, script.stderr
    assert "complete" in script.stdout and "armillary" in script.stdout
    words = {**os.environ, "COMP_WORDS": "armillary sc", "COMP_CWORD": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "armillary"],
        capture_output=True,
        text=True,
        env={**words, "_ARMILLARY_COMPLETE": "complete_bash"},
        check=False,
    )
    assert {"scale", "schema"} <= set(completed.stdout.split()), completed


def test_top_shows_each_node_from_its_heartbeat(node: NodeProcess, cli: Cli) -> None:
    def listed() -> str | None:
        code, out, _ = cli("top")
        line = next((row for row in out.splitlines() if row.startswith(node.name)), "")
        return out if code == 0 and "%" in line else None

    out = wait_for(listed, timeout_s=30, what="a heartbeat with usage")
    assert out.splitlines()[0].split()[:2] == ["NAME", "CPU%"]
    code, _, err = cli("top", "pods")
    assert code == EXIT_INVALID and "armillary ps" in err


def test_apply_wait_then_scale_then_restart_rolls_the_replicas(
    server: ServerProcess, node: NodeProcess, cli: Cli
) -> None:
    stack, name = unique("s"), unique("t")
    mark = name
    documents = [docs.stack(stack, docs.agent()), docs.tenant(name, stack, mark)]
    both = "\n---\n".join(json.dumps(d) for d in documents)
    code, out, err = cli("apply", "--wait", "-f", "-", input=both)
    assert code == 0, (out, err)
    assert f"tenant/{name} Ready" in err  # progress on stderr
    assert len(processes_marked(mark)) == 1  # Ready means running, not just accepted

    code, _, err = cli("scale", f"{name}/agnet", "--replicas", "2")
    assert code == EXIT_INVALID and "did you mean 'agent'?" in err
    code, out, err = cli("scale", f"{name}/agent", "--replicas", "2")
    assert code == 0 and "agent replicas=2" in out, err
    wait_for(lambda: len(processes_marked(mark)) == 2, timeout_s=60, what="a second replica")
    code, out, err = cli("rollout", "status", name, "-w")
    assert code == 0, (out, err)

    before = {r["id"] for r in replicas(server, name)}
    code, out, err = cli("restart", f"{name}/agent")
    assert code == 0 and "restarting" in out, err
    with server.client() as http:
        override = http.get(f"/api/v1/tenants/{name}").json()["spec"]["overrides"]["agent"]
    assert override["replicas"] == 2 and RESTARTED_AT in override["env"]
    code, out, err = cli("rollout", "status", name, "-w")
    assert code == 0, (out, err)

    def replaced() -> bool:
        now = replicas(server, name)
        running = [r for r in now if (r.get("report") or {}).get("state") == "running"]
        return len(running) == 2 and not before & {r["id"] for r in now}

    wait_for(replaced, timeout_s=60, what="both replicas replaced")

    # A change whose new replicas crash-loop fails the wait (and is rolled back).
    broken = docs.stack(stack, docs.agent(command=["python3", "-c", "raise SystemExit(1)"]))
    code, _, err = cli("apply", "--wait", "-f", "-", input=json.dumps(broken))
    assert code == EXIT_ERROR, err
    assert f"tenant/{name} failed" in err
