"""The release registry and health-gated rollouts, with a real git repository, a real
server and node daemon, on SQLite and on Postgres.

A repository holds an `agent` with three tags: 1.0.0 and 1.1.0 are healthy, 1.2.0's
health check fails. Five tenants roll 1.0.0 → 1.1.0 (all healthy, at most two
tenants at a time), then to 1.2.0 → the first tenants to try it roll back, the rest
never start it: every tenant ends on 1.1.0, the rollout marked failed with the reason.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.api import apply, replicas
from tests.support.cli import invoke
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.long_running

APP = """\
import http.server, os, pathlib
VERSION = pathlib.Path("VERSION").read_text().strip()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        broken = self.path == "/healthz" and VERSION.startswith("1.2")
        self.send_response(500 if broken else 200)
        self.end_headers()
        self.wfile.write(VERSION.encode())
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
VERSIONS = ("1.0.0", "1.1.0", "1.2.0")
TENANTS = 5


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("agent-repo")
    git(path, "init", "-q")
    git(path, "config", "user.email", "ci@armillary.dev")
    git(path, "config", "user.name", "ci")
    (path / "app.py").write_text(APP)
    for version in VERSIONS:
        (path / "VERSION").write_text(version + "\n")
        git(path, "add", ".")
        git(path, "commit", "-q", "-m", f"agent {version}")
        git(path, "tag", f"agent/v{version}")
    (path / "VERSION").write_text("working tree, never run\n")  # releases run from tags
    return path


def documents(suffix: str, version: str) -> list[dict[str, Any]]:
    stack = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Stack",
        "metadata": {"name": f"agents-{suffix}"},
        "spec": {
            "components": [
                {
                    "name": "agent",
                    "release": f"agent@{version}",
                    "replicas": 2,
                    "ports": [{"name": "http"}],
                    "health_check": {
                        "http": {"path": "/healthz", "port": "http"},
                        "interval_s": 0.2,
                        # A loaded CI machine may take a while to start Python: failures
                        # before the start period ends do not count, as users would set it.
                        "start_period_s": 3,
                        "failure_threshold": 3,
                    },
                    "rollout": {
                        "max_parallel_tenants": 2,
                        "progress_deadline_s": 120,
                        "unhealthy_grace_s": 5,
                    },
                }
            ]
        },
    }
    org = {"apiVersion": "armillary.dev/v1", "kind": "Org", "metadata": {"name": "acme"}}
    tenants = [
        {
            "apiVersion": "armillary.dev/v1",
            "kind": "Tenant",
            "metadata": {"name": f"t{i}-{suffix}"},
            "spec": {"org": "acme", "stack": f"agents-{suffix}"},
        }
        for i in range(TENANTS)
    ]
    return [{**org, "spec": {}}, stack, *tenants]


def tenant_status(server: ServerProcess, name: str) -> dict[str, Any]:
    with server.client() as http:
        status: dict[str, Any] = http.get(f"/api/v1/tenants/{name}").json().get("status", {})
    return status


def running_release(server: ServerProcess, tenant: str) -> set[str] | None:
    """The releases the tenant's agent replicas run, if all are up and healthy."""
    found = replicas(server, tenant, "agent")
    if len(found) != 2 or not all((r["report"] or {}).get("healthy") for r in found):
        return None
    return {psutil.Process(r["report"]["pid"]).environ()["ARMILLARY_RELEASE"] for r in found}


def on_release(server: ServerProcess, tenants: list[str], version: str) -> bool:
    for name in tenants:
        entry = tenant_status(server, name).get("rollouts", {}).get("agent", {})
        if entry.get("state") != "complete" or entry.get("release") != f"agent@{version}":
            return False
        if running_release(server, name) != {f"agent@{version}"}:
            return False
    return True


def overlap(items: list[dict[str, Any]]) -> int:
    """The most revisions in progress at one moment, from their timestamps."""
    moments = []
    for item in items:
        moments.append((dt.datetime.fromisoformat(item["startedAt"]), 1))
        moments.append((dt.datetime.fromisoformat(item["finishedAt"]), -1))
    most = now = 0
    for _, step in sorted(moments):
        now += step
        most = max(most, now)
    return most


@pytest.fixture(scope="module")
def recorded(server: ServerProcess, repo: Path) -> list[str]:
    """`release record --from-git` of every tag; what the command printed each time."""
    printed = []
    for version in VERSIONS:
        code, out, err = invoke(
            server, "release", "record", "agent", version, str(repo), "--from-git",
            "--command", "python3 app.py",
        )  # fmt: skip
        assert code == 0, err
        printed.append(out)
    return printed


def test_record_import_export_round_trip_and_bad_records(
    server: ServerProcess, repo: Path, recorded: list[str], tmp_path: Path
) -> None:
    for version, out in zip(VERSIONS, recorded, strict=True):
        assert f"release/agent-{version} created" in out
    assert (
        git(repo, "rev-parse", "agent/v1.1.0^0")
        in invoke(server, "release", "show", "agent", "1.1.0")[1]
    )

    code, _, err = invoke(
        server, "release", "record", "agent", "9.9.9", str(repo), "--from-git", "--command", "x"
    )
    assert code == 4 and "no tag 'agent/v9.9.9'" in err

    first, second = tmp_path / "a", tmp_path / "b"
    assert invoke(server, "release", "export", str(first))[0] == 0
    code, out, err = invoke(server, "release", "import", str(first))
    assert code == 0 and out.count("unchanged") == len(VERSIONS), (out, err)
    assert invoke(server, "release", "export", str(second))[0] == 0
    files = sorted(p.relative_to(first) for p in first.rglob("release.yaml"))
    assert [str(f) for f in files] == [f"agent/v{v}/release.yaml" for v in VERSIONS]
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes()

    code, out, _ = invoke(server, "release", "list")
    assert code == 0 and [line.split()[1] for line in out.splitlines()[1:]] == list(VERSIONS)

    # A record that breaks the published schema names the schema rule it broke.
    bad = first / "agent" / "v1.1.0" / "release.yaml"
    bad.write_text(bad.read_text().replace("commit: ", "commit: zz"))
    code, _, err = invoke(server, "release", "import", str(first))
    assert code == 4
    assert "spec.git.commit" in err
    assert "release.schema.json#/properties/spec/properties/git/properties/commit/pattern" in err


def test_a_pin_to_a_release_that_does_not_exist_stores_nothing(
    server: ServerProcess, recorded: list[str]
) -> None:
    suffix = uuid.uuid4().hex[:6]
    stack, tenant = documents(suffix, "1.0.0")[1:3]
    tenant["spec"]["overrides"] = {"agent": {"release": "agent@3.0.0"}}
    with server.client() as http:
        response = http.post("/api/v1/apply", json={"documents": [stack, tenant]})
        assert response.status_code == 422, response.text
        problem = response.json()
        assert "agent@3.0.0 does not exist" in response.text
        assert any(e["path"] == "spec.overrides.agent.release" for e in problem["errors"])
        assert http.get(f"/api/v1/stacks/{stack['metadata']['name']}").status_code == 404


def test_five_tenants_roll_forward_then_back_from_a_failing_release(
    server: ServerProcess, node: NodeProcess, repo: Path, recorded: list[str]
) -> None:
    suffix = uuid.uuid4().hex[:6]
    names = [f"t{i}-{suffix}" for i in range(TENANTS)]
    apply(server, *documents(suffix, "1.0.0"))
    wait_for(lambda: on_release(server, names, "1.0.0"), timeout_s=90, what="all on 1.0.0")

    # Each replica runs from the immutable checkout of its tag, not the working tree.
    pid = replicas(server, names[0], "agent")[0]["report"]["pid"]
    checkout = Path(psutil.Process(pid).cwd())
    assert checkout == node.data_dir / "checkouts" / git(repo, "rev-parse", "agent/v1.0.0^0")
    assert (checkout / "VERSION").read_text() == "1.0.0\n"

    apply(server, documents(suffix, "1.1.0")[1])
    wait_for(lambda: on_release(server, names, "1.1.0"), timeout_s=120, what="all on 1.1.0")
    with server.client() as http:
        second = [
            item
            for name in names
            for item in http.get(f"/api/v1/tenants/{name}/rollouts").json()["items"]
            if item["revision"] == 2
        ]
    assert [i["state"] for i in second] == ["complete"] * TENANTS
    assert overlap(second) <= 2  # max_parallel_tenants

    apply(server, documents(suffix, "1.2.0")[1])

    def settled() -> list[dict[str, Any]] | None:
        entries = [tenant_status(server, n).get("rollouts", {}).get("agent", {}) for n in names]
        failed = [e for e in entries if e.get("state") == "failed" and "rolledBackTo" in e]
        held = [e for e in entries if e.get("held")]
        if failed and len(failed) + len(held) == TENANTS and on_running(names, "1.1.0"):
            return entries
        return None

    def on_running(tenants: list[str], version: str) -> bool:
        return all(running_release(server, t) == {f"agent@{version}"} for t in tenants)

    entries = wait_for(settled, timeout_s=120, what="the 1.2.0 rollout to stop and roll back")
    failed = [n for n, e in zip(names, entries, strict=True) if e.get("state") == "failed"]
    assert 1 <= len(failed) <= 2
    for name in failed:
        degraded = next(
            c for c in tenant_status(server, name)["conditions"] if c["type"] == "Degraded"
        )
        assert degraded["status"] == "True"
        assert "agent@1.2.0" not in degraded["message"] or "rolled back" in degraded["message"]
        assert "unhealthy" in degraded["message"] and "agent@1.1.0" in degraded["message"]
    for name in set(names) - set(failed):
        entry = tenant_status(server, name)["rollouts"]["agent"]
        assert "agent@1.2.0 failed in tenant" in entry["held"]

    code, out, _ = invoke(server, "rollout", "history", f"{failed[0]}/agent")
    assert code == 0
    assert [line.split()[3] for line in out.splitlines()[1:]] == ["complete", "complete", "failed"]
    assert "unhealthy" in out.splitlines()[-1]

    # undo pins the failed tenant to the release it runs again: Degraded clears.
    code, out, err = invoke(server, "rollout", "undo", f"{failed[0]}/agent")
    assert code == 0, err
    assert "pinned to agent@1.1.0" in out

    def recovered() -> bool:
        status = tenant_status(server, failed[0])
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return conditions.get("Degraded") == "False" and on_running(failed[:1], "1.1.0")

    wait_for(recovered, timeout_s=60, what="the undone tenant to be healthy and not degraded")
    code, _, err = invoke(server, "rollout", "undo", f"{names[0]}/agent", "--to-revision", "99")
    assert code == 4 and "no revision 99" in err
