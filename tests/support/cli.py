"""The real `armillary` Typer app, run in-process (no subprocess start-up per call).

`run` is the bare invocation; `invoke` points it at a test server with its admin token
(or `token`); `Cli` is the same bound to one server, as the `cli` fixture hands it out.
Each returns (exit code, stdout, stderr).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from typer.testing import CliRunner

from tests.support.servers import ServerProcess

Outcome = tuple[int, str, str]


def run(
    *args: str, env: Mapping[str, str | None] | None = None, input: str | None = None
) -> Outcome:
    """`armillary ARGS`; an env value of None unsets that variable for the call."""
    from armillary.main import app

    result = CliRunner().invoke(app, list(args), env=env, input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def invoke(
    server: ServerProcess, *args: str, token: str | None = None, input: str | None = None
) -> Outcome:
    """`armillary ARGS` against `server`, as its admin unless `token` is given."""
    env = {"ARMILLARY_URL": server.url, "ARMILLARY_TOKEN": token or server.token}
    return run(*args, env=env, input=input)


class Cli:
    """`invoke`, bound to one server; `workdir` is a directory the test owns."""

    def __init__(self, server: ServerProcess, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir

    def __call__(self, *args: str, input: str | None = None) -> Outcome:
        return invoke(self.server, *args, input=input)
