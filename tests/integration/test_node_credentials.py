"""Node keys, with a real server and real node daemons.

The key never shows on a daemon's command line: `armillary node` takes it from
`--token-file` or `ARMILLARY_NODE_TOKEN`, and `--token` still works but warns on
stderr that every user of the machine can read it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.nodes import NodeProcess
from tests.support.processes import command_line
from tests.support.servers import ServerProcess


def _node_key(server: ServerProcess) -> str:
    with server.client() as http:
        answer = http.post("/api/v1/tokens", json={"role": "node", "description": "test"})
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


@pytest.mark.parametrize("token_by", ["file", "env"])
def test_the_node_key_never_shows_on_the_daemons_command_line(
    server: ServerProcess, tmp_path: Path, token_by: str
) -> None:
    key = _node_key(server)
    node = NodeProcess(
        server=server,
        data_dir=tmp_path / "node",
        name=f"node-argv-{token_by}",
        token=key,
        token_by="file" if token_by == "file" else "env",
    )
    try:
        node.start()
        assert node.process is not None
        seen = command_line(node.process.pid)
        assert "armillary node" in seen
        assert key not in seen
        assert key.split("_")[2] not in seen  # not even the secret part
        assert "warning" not in node.log()
    finally:
        node.stop()


def test_a_key_given_with_token_is_used_but_warned_about(tmp_path: Path) -> None:
    # A bad label stops the daemon before it connects: the warning comes first.
    done = subprocess.run(
        [sys.executable, "-m", "armillary", "node", "--token", "arm_x_y", "--labels", "bad"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "warning: --token puts the key on the command line" in done.stderr
    assert "--token-file PATH or ARMILLARY_NODE_TOKEN" in done.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("", "must hold the key alone"), ("a b\n", "must hold the key alone")],
)
def test_a_token_file_that_cannot_be_used_is_a_usage_error_naming_it(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "node.token"
    if content is not None:
        path.write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "armillary", "node", "--token-file", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"--token-file: {path}" in done.stderr or f"--token-file: cannot read {path}" in (
        done.stderr
    )
    assert message in done.stderr
