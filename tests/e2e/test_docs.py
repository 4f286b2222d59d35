"""The README's and the docs' shell examples, run as written against a real server and
node: every ```sh block in README.md and docs/*.md is executed, with `bash -e`, and
must exit 0, so an example that no longer works fails the suite.

What the test stands up first is what `make demo DEMO_FLAGS=-d` starts: `armillary up
examples/quickstart -d`, on a port of the test's own (every `127.0.0.1:7400` in an
example is rewritten to it), in a working directory holding a copy of examples/ and
the checkout's .venv, with EDITOR=true. The docs' blocks run first, then the README's
in order; its last block runs `armillary down`. Around them, the README's promises
that a shell exit code cannot show: `up` runs every replica and prints URLs that
answer, the webhook's agent run succeeds, and `down` leaves no process behind.

An HTML comment on the line(s) before a block steers it:
  <!-- doc-test: skip: why -->      not run (another machine, a made-up id, …)
  <!-- doc-test: prints: text -->   run, and its output must contain `text`
so a new example is executed unless its author says why it cannot be.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import tls, up
from tests.support.markdown import ROOT, Block, blocks
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.traversal import open_to_tenants
from tests.support.waiting import wait_for

DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]  # README last: `down`
BLOCK_DEADLINE_S = 120


ALL = [b for path in DOCS for b in blocks(path)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Demo:
    workdir: Path
    home: Path
    port: int
    env: dict[str, str]
    printed: str  # what `up -d` printed
    pids: dict[str, int]  # the server's and the node's, from up.json


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`make demo DEMO_FLAGS=-d`, on a port and in a directory of this test's own."""
    workdir = tmp_path_factory.mktemp("docs")
    open_to_tenants(workdir)  # the node's data dir is in it
    shutil.copytree(ROOT / "examples", workdir / "examples")
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    home = workdir / ".armillary"
    port = free_port()
    env = {
        **up.env(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "EDITOR": "true",
    }
    with up.quickstart(workdir, home, env, port) as started:
        pids = json.loads((home / "up.json").read_text())
        yield Demo(
            workdir=workdir, home=home, port=port, env=env, printed=started.stdout, pids=pids
        )


def test_up_runs_every_quickstart_replica_and_prints_urls_that_answer(demo: Demo) -> None:
    assert "acme-support" in demo.printed and "acme-sre" in demo.printed
    # 3 services for one tenant, 4 for the other
    wait_for(lambda: len(up.processes_under(demo.home)) == 7, what="7 replicas")
    urls = [
        w for w in demo.printed.split() if w.startswith("http://127.0.0.1:") and "/api" not in w
    ]
    assert urls and all(httpx.get(u, timeout=5).status_code == 200 for u in urls[:3])


def test_the_readme_webhook_runs_the_agent_to_success(demo: Demo) -> None:
    """The README's curl: a signed GitHub delivery → routed to acme-support → a run of
    its agent that succeeds with the agent's answer."""
    body = json.dumps({"action": "opened", "repository": {"full_name": "acme/support-bot"}})
    signature = hmac.new(b"quickstart-webhook-secret", body.encode(), hashlib.sha256)
    answer = httpx.post(
        f"http://127.0.0.1:{demo.port}/webhooks/github",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={signature.hexdigest()}",
        },
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["state"] == "routed"
    token = json.loads((demo.home / "context.json").read_text())["token"]
    run_id = answer.json()["run"]

    def succeeded() -> dict[str, Any] | None:
        runs = httpx.get(
            f"http://127.0.0.1:{demo.port}/api/v1/runs",
            verify=tls.CONTEXT,
            params={"tenant": "acme-support"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()["items"]
        return next((r for r in runs if r["id"] == run_id and r["state"] == "succeeded"), None)

    run = wait_for(succeeded, timeout_s=60, what="the webhook's agent run to succeed")
    assert run["tenant"] == "acme-support"


# A block marked skip in its doc is not collected at all (under CI=true no test may
# skip); test_every_block_is_found_and_every_skip_says_why keeps those marks honest.
RUN = [b for b in ALL if not b.skip]


@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_the_example_runs(block: Block, demo: Demo) -> None:
    script = block.body.replace("127.0.0.1:7400", f"127.0.0.1:{demo.port}")
    shell = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=demo.workdir,
        env=demo.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a command that never ends is killed with its children
    )
    try:
        stdout, stderr = shell.communicate(timeout=BLOCK_DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(shell.pid, signal.SIGKILL)
        stdout, stderr = shell.communicate()
        pytest.fail(f"{block.name} still running after {BLOCK_DEADLINE_S}s:\n{stdout}\n{stderr}")
    said = f"{block.name} exited {shell.returncode}:\n{stdout}\n{stderr}"
    assert shell.returncode == 0, said
    for text in block.prints:
        assert text in stdout, said


def test_every_block_is_found_and_every_skip_says_why() -> None:
    """The parser sees every ```sh fence, and a skip without a reason is refused."""
    fences = sum(p.read_text().splitlines().count("```sh") for p in DOCS)
    assert len(ALL) == fences
    assert all(b.skip is None or b.skip.strip() for b in ALL)


def test_down_leaves_nothing_running(demo: Demo) -> None:
    """After the README's `down` (again here, so this holds when blocks are deselected;
    a second `down` finds nothing up and says so)."""
    down = subprocess.run(
        [sys.executable, "-m", "armillary", "down"],
        cwd=demo.workdir,
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert down.returncode == 0, down.stdout + down.stderr
    assert up.processes_under(demo.home) == []
    assert not alive(demo.pids["server"]) and not alive(demo.pids["node"])
