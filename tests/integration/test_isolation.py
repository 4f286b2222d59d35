"""Tenants on one node are kept apart by the OS: a node daemon running as root runs each
tenant's replicas as an unprivileged user of that tenant alone.

The proof is taken from inside: a replica of one tenant tries to read what another
tenant's replica holds (its environment, its data directory, its log) and what the
daemon holds (its state file), and prints what happened; the test reads that output.
Real server, real node daemon, real processes, on SQLite and Postgres.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from armillary.node import statefile, tenancy
from armillary.node.supervisor import Supervisor
from armillary.protocol import AllocationSpec
from tests.support.api import apply, ready, replicas
from tests.support.cli import Cli
from tests.support.documents import stack, tenant
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.traversal import open_to_tenants
from tests.support.waiting import wait_for, wait_for_async

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-tenant users need root")

# The module's node runs each tenant as a user of its own (its default as root).
NODE_TENANT_UIDS = None

VICTIM = """
import os, pathlib, time
password = os.environ["DB_PASSWORD"]
(pathlib.Path(os.environ["ARMILLARY_DATA_DIR"]) / "secret.txt").write_text(password)
print("connecting with", password, flush=True)
time.sleep(100000)
"""

PROBE = """
import json, os, pathlib, time

def attempt(check, read):
    try:
        got = read()
    except OSError as exc:
        return {"check": check, "outcome": "denied", "error": exc.strerror}
    return {"check": check, "outcome": "read", "got": repr(got)[:300]}

env = os.environ
own = pathlib.Path(env["ARMILLARY_DATA_DIR"])
(own / "mine.txt").write_text("mine")
checks = [
    attempt("environ", lambda: open(f"/proc/{env['VICTIM_PID']}/environ", "rb").read()),
    attempt("data-dir", lambda: os.listdir(env["VICTIM_DIR"])),
    attempt("data-file", lambda: open(env["VICTIM_DIR"] + "/secret.txt").read()),
    attempt("log", lambda: open(env["VICTIM_LOG"]).read()),
    attempt("state-file", lambda: open(env["STATE_FILE"]).read()),
    attempt("state-journal", lambda: open(env["STATE_JOURNAL"]).read()),
    attempt("tenants", lambda: os.listdir(own.parent)),
]
report = {
    "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "home": env["HOME"],
    "own": (own / "mine.txt").read_text(), "checks": checks,
}
print("PROBE " + json.dumps(report), flush=True)
time.sleep(100000)
"""

# The exec health check fails unless it runs as the replica's (unprivileged) user.
NOT_ROOT = ["python3", "-c", "import os, sys; sys.exit(os.getuid() == 0)"]


def fresh(prefix: str) -> tuple[str, str]:
    mark = uuid.uuid4().hex[:8]
    return f"{prefix}-{mark}", mark


def log_of(node: NodeProcess, replica: dict[str, Any]) -> Path:
    return node.data_dir / "replicas" / replica["id"] / "output.log"


def probe_report(node: NodeProcess, replica: dict[str, Any]) -> dict[str, Any] | None:
    path = log_of(node, replica)
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.startswith("PROBE "):
            found: dict[str, Any] = json.loads(line.removeprefix("PROBE "))
            return found
    return None


def test_a_replica_cannot_read_another_tenants_environment_files_logs_or_the_node_state(
    server: ServerProcess, node: NodeProcess, cli: Cli
) -> None:
    victim, mark = fresh("victim")
    password = f"pw-{uuid.uuid4().hex}"
    vault = {"name": "vault", "command": ["python3", "-c", VICTIM]}
    apply(
        server,
        stack(f"s-{mark}", vault),
        tenant(victim, f"s-{mark}", mark, env={"DB_PASSWORD": password}),
    )
    wait_for(lambda: ready(server, victim), timeout_s=60, what="the victim Ready")
    [held] = replicas(server, victim)
    victim_dir = node.data_dir / "tenants" / victim
    wait_for(lambda: (victim_dir / "secret.txt").exists(), timeout_s=30, what="its secret file")

    prober, mark = fresh("prober")
    probe = {
        "name": "probe",
        "command": ["python3", "-c", PROBE],
        "health_check": {"exec": {"command": NOT_ROOT}, "interval_s": 0.3},
    }
    where = {
        "VICTIM_PID": str(held["report"]["pid"]),
        "VICTIM_DIR": str(victim_dir),
        "VICTIM_LOG": str(log_of(node, held)),
        "STATE_FILE": str(node.data_dir / statefile.FILE_NAME),
        "STATE_JOURNAL": str(statefile.journal_path(node.data_dir / statefile.FILE_NAME)),
    }
    apply(server, stack(f"s-{mark}", probe), tenant(prober, f"s-{mark}", mark, env=where))
    probing = wait_for(lambda: replicas(server, prober), timeout_s=60, what="the prober placed")[0]
    report = wait_for(lambda: probe_report(node, probing), timeout_s=60, what="the probe's report")

    outcomes = {c["check"]: c["outcome"] for c in report["checks"]}
    assert outcomes == dict.fromkeys(outcomes, "denied"), report["checks"]
    assert set(outcomes) == {
        *("environ", "data-dir", "data-file", "log", "state-file", "state-journal", "tenants")
    }
    wait_for(lambda: ready(server, prober), timeout_s=60, what="the prober Ready (exec probe)")
    code, shown, _ = cli("logs", f"{prober}/probe")
    assert code == 0 and '"outcome": "denied"' in shown and password not in shown

    # Each tenant is its own user: from the range, no groups, HOME its own directory.
    uids = tenancy.DEFAULT_RANGE
    assert report["uid"] == report["gid"] == tenancy.uid_for(prober, uids)
    assert report["groups"] == [] and report["own"] == "mine"
    assert report["home"] == str(node.data_dir / "tenants" / prober)
    code, shown, _ = cli("exec", f"{prober}/probe", "--", "id", "-u")  # exec: as the replica
    assert code == 0 and shown.strip() == str(report["uid"])
    victim_stat = victim_dir.stat()
    assert victim_stat.st_uid == victim_stat.st_gid == tenancy.uid_for(victim, uids)
    assert tenancy.uid_for(victim, uids) != report["uid"]
    assert stat.S_IMODE(victim_stat.st_mode) == 0o700
    for name in (statefile.FILE_NAME, "node-state.journal"):  # the journal holds specs too
        state = (node.data_dir / name).stat()
        assert (state.st_uid, stat.S_IMODE(state.st_mode)) == (0, 0o600)
    assert stat.S_IMODE((node.data_dir / "replicas").stat().st_mode) == 0o700
    assert password in log_of(node, held).read_text()  # the node itself keeps the output


def test_the_api_and_nodes_say_how_tenants_are_kept_apart(
    server: ServerProcess, node: NodeProcess, cli: Cli, tmp_path: Path
) -> None:
    with server.client() as http:
        [listed] = [n for n in http.get("/api/v1/nodes").json()["items"] if n["name"] == node.name]
    assert listed["isolation"] == "per-tenant-user"
    code, shown, _ = cli("nodes")
    assert code == 0 and "per-tenant-user" in shown and "share one OS user" not in shown

    shared = NodeProcess(
        server=server, data_dir=tmp_path / "shared", name="node-shared", tenant_uids="off"
    )
    shared.start()
    try:
        code, shown, _ = cli("nodes")
        assert code == 0
        assert "shared-user" in shown and "Tenants share one OS user on node-shared" in shown
    finally:
        shared.stop()


async def test_two_tenants_mapped_to_one_uid_do_not_share_it(tmp_path: Path) -> None:
    """A range of one uid maps every tenant to it: the first keeps it, the second is
    refused with a reason that says what to do; nothing of it runs."""
    open_to_tenants(tmp_path)
    supervisor = Supervisor(
        data_dir=tmp_path / "node", tenant_uids=tenancy.UidRange(first=300000, last=300000)
    )
    specs = [
        AllocationSpec(
            id=f"{who}-0",
            tenant=who,
            component="sleeper",
            name="sleeper-0",
            index=0,
            type="service",
            spec_hash="h",
            command=["sleep", "1000"],
        )
        for who in ("first", "second")
    ]
    await supervisor.start()
    try:
        await supervisor.converge(specs)
        reports = {r.id: r for r in supervisor.reports()}
        assert reports["first-0"].state == "running" and reports["first-0"].pid is not None
        assert reports["second-0"].pid is None
        assert reports["second-0"].reason == "TenantUidTaken"
        assert "first" in (reports["second-0"].message or "")
        assert (tmp_path / "node" / "tenants" / "first").stat().st_uid == 300000
        assert not (tmp_path / "node" / "tenants" / "second").exists()
    finally:
        await supervisor.close(stop_workloads=True)


async def test_a_directory_left_by_a_root_run_tenant_is_handed_over_whole(tmp_path: Path) -> None:
    open_to_tenants(tmp_path)
    legacy = tmp_path / "node" / "tenants" / "legacy"
    (legacy / "cache").mkdir(parents=True)
    (legacy / "cache" / "old.txt").write_text("kept")
    supervisor = Supervisor(data_dir=tmp_path / "node", tenant_uids=tenancy.DEFAULT_RANGE)
    append = 'cat "$HOME/cache/old.txt" > "$ARMILLARY_DATA_DIR/cache/new.txt"'
    spec = AllocationSpec(
        id="legacy-0",
        tenant="legacy",
        component="job",
        name="job-0",
        index=0,
        type="job",
        spec_hash="h",
        command=["sh", "-c", append],
    )
    await supervisor.start()
    try:
        await supervisor.converge([spec])

        def succeeded() -> bool:
            return any(r.state == "succeeded" for r in supervisor.reports())

        await wait_for_async(succeeded, timeout_s=30, what="the job to succeed")
    finally:
        await supervisor.close(stop_workloads=True)
    uid = tenancy.uid_for("legacy", tenancy.DEFAULT_RANGE)
    assert (legacy / "cache" / "new.txt").read_text() == "kept"
    for path in (legacy, legacy / "cache", legacy / "cache" / "old.txt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (uid, uid), path
    assert stat.S_IMODE(legacy.stat().st_mode) == 0o700
    new = (legacy / "cache" / "new.txt").stat()
    assert stat.S_IMODE(new.st_mode) == 0o600  # umask 077


def test_a_root_daemon_whose_tenants_cannot_reach_its_data_dir_does_not_start(
    tmp_path: Path,
) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    open_to_tenants(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "armillary", "node", "--data-dir", str(closed / "node")],
        env={**os.environ, "ARMILLARY_TOKEN": "arm_x_y", "ARMILLARY_URL": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert f"{closed} is not traversable by other users (mode 0700)" in result.stderr
    assert f"chmod o+x {closed}" in result.stderr and "--tenant-uids off" in result.stderr
