"""Contexts and an honest `up`: the CLI finds its server from any directory, says
where it looked when it has no token, and `up` stops at once, non-zero, on a port in
use or a component that crash-loops.

The walk-through runs the README's commands, as written, from a directory other than
the one `up` ran in, with no ARMILLARY_* variable set: only the contexts file `up`
wrote in the (temporary) user's config directory tells them where the server is.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import up
from tests.support.cli import run
from tests.support.markdown import ROOT, blocks
from tests.support.ports import bound_socket, free_port
from tests.support.processes import alive
from tests.support.servers import ServerProcess
from tests.support.traversal import open_to_tenants
from tests.support.waiting import wait_for

UP_DEADLINE_S = 240
SECRET = "arm_contexts_test_secret_value"  # made up, to look for in the output


def cli_env(tmp_path: Path) -> dict[str, str | None]:
    """A CLI with nothing set but a contexts file of the test's, run where no
    `.armillary` is."""
    return {
        "ARMILLARY_CONFIG": str(tmp_path / "user" / "armillary" / "config.json"),
        "ARMILLARY_HOME": str(tmp_path / "not-a-project" / ".armillary"),
        "ARMILLARY_URL": None,
        "ARMILLARY_TOKEN": None,
        "ARMILLARY_CONTEXT": None,
    }


def test_context_set_use_list_delete_keep_tokens_in_a_0600_file_and_never_print_them(
    tmp_path: Path,
) -> None:
    env = cli_env(tmp_path)
    config = Path(str(env["ARMILLARY_CONFIG"]))
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    said = []

    def ok(*args: str) -> str:
        code, out, err = run(*args, env=env)
        assert code == 0, out + err
        said.append(out + err)
        return out

    ok(
        "context",
        "set",
        "alpha",
        "--server",
        "http://127.0.0.1:7411",
        "--token-file",
        str(token_file),
    )
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    ok("context", "set", "beta", "--server", "http://127.0.0.1:7412", "--token", "arm_other_secret")
    listed = ok("context", "list").splitlines()
    assert listed[0].split() == ["CURRENT", "NAME", "SERVER", "TOKEN", "HOME"]
    assert listed[1].split()[:3] == ["*", "alpha", "http://127.0.0.1:7411"]  # the first one
    assert listed[2].split()[:2] == ["beta", "http://127.0.0.1:7412"]
    ok("context", "use", "beta")
    assert ok("context", "list").splitlines()[2].split()[:2] == ["*", "beta"]
    code, _, err = run("context", "use", "gamma", env=env)
    assert code != 0 and "no context 'gamma'" in err and "alpha, beta" in err
    ok("context", "delete", "beta")
    assert "beta" not in ok("context", "list")
    saved = json.loads(config.read_text())
    assert saved["current"] is None
    assert saved["contexts"] == {"alpha": {"server": "http://127.0.0.1:7411", "token": SECRET}}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert not any(SECRET in text or "arm_other_secret" in text for text in said)


@pytest.mark.only_backend("sqlite")  # where the CLI finds its token: no store involved
def test_a_context_reaches_the_server_from_anywhere_and_no_token_says_where_it_looked(
    server: ServerProcess, tmp_path: Path
) -> None:
    env = cli_env(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(server.token)
    assert run("context", "set", "bare", "--server", server.url, env=env)[0] == 0
    code, _, err = run("get", "tenants", env=env)
    assert code != 0
    assert "missing 'Authorization: Bearer <token>' header" in err
    assert "looked at --server/--token; ARMILLARY_URL/ARMILLARY_TOKEN" in err
    assert f"{tmp_path / 'not-a-project' / '.armillary' / 'context.json'} (absent)" in err
    assert f"the current context in {env['ARMILLARY_CONFIG']} ('bare')" in err
    assert "armillary context use NAME" in err and "(known: bare)" in err
    assert "--token" in err and "ARMILLARY_TOKEN" in err

    code, out, err = run(
        "context", "set", "admin", "--server", server.url, "--token-file", str(token_file), env=env
    )
    assert code == 0 and server.token not in out + err
    assert run("--context", "admin", "get", "tenants", env=env)[0] == 0
    assert run("get", "tenants", env={**env, "ARMILLARY_CONTEXT": "admin"})[0] == 0
    assert run("--context", "nope", "get", "tenants", env=env)[0] != 0
    assert run("context", "use", "admin", env=env)[0] == 0
    assert run("get", "tenants", env=env)[0] == 0
    # A project directory wins over the current context: its own server and token.
    assert run("context", "use", "bare", env=env)[0] == 0
    assert run("get", "tenants", env={**env, "ARMILLARY_HOME": str(server.home)})[0] == 0
    # A context's token is never sent to another server than its own.
    other = f"http://127.0.0.1:{free_port()}"
    assert run("context", "use", "admin", env=env)[0] == 0
    assert run("doctor", "-o", "json", env={**env, "ARMILLARY_URL": other})[0] != 0


def _up(
    directory: Path, *, cwd: Path, env: dict[str, str], port: int, detach: bool
) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "armillary", "up", str(directory), "--port", str(port)]
    return subprocess.run(
        [*args, "-d"] if detach else args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=UP_DEADLINE_S,
        check=False,
    )


def test_up_on_a_port_in_use_says_so_and_starts_nothing(tmp_path: Path) -> None:
    home = tmp_path / ".armillary"
    holder = bound_socket(free_port())
    holder.listen()
    try:
        port = holder.getsockname()[1]
        done = _up(
            ROOT / "examples" / "quickstart", cwd=tmp_path, env=up.env(home), port=port, detach=True
        )
    finally:
        holder.close()
        up.clean_up(None, home)
    assert done.returncode != 0, done.stdout + done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "--port" in done.stderr
    assert not (home / "up.json").exists() and not (home / "server.log").exists()


@pytest.mark.only_backend("sqlite")  # the port of a running server: no store involved
def test_up_on_the_port_of_another_armillary_says_so_not_unauthorized(
    server: ServerProcess, tmp_path: Path
) -> None:
    home = tmp_path / ".armillary"
    port = int(server.url.rsplit(":", 1)[1])
    try:
        done = _up(
            ROOT / "examples" / "quickstart", cwd=tmp_path, env=up.env(home), port=port, detach=True
        )
    finally:
        up.clean_up(None, home)
    assert done.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr, done.stderr
    assert "Authorization" not in done.stderr


CRASHING = """\
apiVersion: armillary.dev/v1
kind: Org
metadata: {name: crashers}
spec: {display_name: Crashers}
---
apiVersion: armillary.dev/v1
kind: Stack
metadata: {name: broken}
spec:
  components:
    - name: steady
      command: [python3, -c, "import time; time.sleep(600)"]
    - name: flaky
      command: [python3, -c, "import sys; print('flaky: no database at db:5432'); sys.exit(1)"]
      restart: {policy: always, backoff_initial_s: 0.1, backoff_max_s: 0.2, crash_loop_after: 2}
---
apiVersion: armillary.dev/v1
kind: Tenant
metadata: {name: crasher}
spec: {org: crashers, stack: broken}
"""


def test_up_of_a_crash_looping_component_exits_non_zero_naming_it_and_its_reason(
    tmp_path: Path,
) -> None:
    """In the foreground, without waiting out the 3 minutes: the component, CrashLoop,
    its exit and its last output, then everything stopped."""
    open_to_tenants(tmp_path)  # the node's data dir is in it
    stack = tmp_path / "broken"
    stack.mkdir()
    (stack / "stack.yaml").write_text(CRASHING)
    home = tmp_path / ".armillary"
    try:
        done = _up(stack, cwd=tmp_path, env=up.env(home), port=free_port(), detach=False)
        said = done.stdout + done.stderr
        assert done.returncode == 1, said
        assert "error: crasher/flaky (replica " in done.stderr, said
        assert "crashloop (CrashLoop): exited with code 1" in done.stderr
        assert "flaky: no database at db:5432" in done.stderr  # its last output
        assert "Stopped." in done.stdout
        assert up.processes_under(home) == []
    finally:
        up.clean_up(None, home)


@pytest.fixture
def walkthrough(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, str], int]]:
    """`up -d` of the quickstart in `project`; `elsewhere` holds the same examples and
    .venv but no .armillary. The environment is a new user's: PATH, HOME and its
    config directory, nothing of Armillary (EDITOR for the README's `$EDITOR` step)."""
    open_to_tenants(tmp_path)
    project, elsewhere, user = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "user"
    for directory in (project, elsewhere):
        shutil.copytree(ROOT / "examples", directory / "examples")
        (directory / ".venv").symlink_to(Path(sys.prefix))
    user.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(user),
        "XDG_CONFIG_HOME": str(user / ".config"),
        "EDITOR": "true",
    }
    port = free_port()
    home = project / ".armillary"
    try:
        started = _up(Path("examples/quickstart"), cwd=project, env=env, port=port, detach=True)
        assert started.returncode == 0, started.stdout + started.stderr
        yield project, elsewhere, env, port
    finally:
        subprocess.run(
            [sys.executable, "-m", "armillary", "down"],
            cwd=project,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        up.clean_up(None, home)


def test_every_readme_command_works_from_another_directory_with_no_variable_set(
    walkthrough: tuple[Path, Path, dict[str, str], int],
) -> None:
    project, elsewhere, env, port = walkthrough
    config = Path(env["XDG_CONFIG_HOME"]) / "armillary" / "config.json"
    pids = json.loads((project / ".armillary" / "up.json").read_text())
    readme = [b for b in blocks(ROOT / "README.md") if not b.skip]
    assert readme and "armillary down" in readme[-1].body
    for block in readme:
        script = block.body.replace("127.0.0.1:7400", f"127.0.0.1:{port}")
        shell = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=elsewhere,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = shell.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            stdout, stderr = shell.communicate()
        said = f"{block.name} exited {shell.returncode}:\n{stdout}\n{stderr}"
        assert shell.returncode == 0, said
        for text in block.prints:
            assert text in stdout, said
    # `up` registered its server as the current context, in a file only its user reads.
    assert json.loads(config.read_text())["current"] == "quickstart"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    # The README's last block ends with `down`: run from elsewhere, it stopped the
    # project's server, node and replicas, found through the current context.
    wait_for(lambda: up.processes_under(project / ".armillary") == [], what="no replica left")
    assert not alive(pids["server"]) and not alive(pids["node"])
    assert not (elsewhere / ".armillary").exists()
