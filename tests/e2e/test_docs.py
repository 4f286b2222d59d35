"""The README's and the docs' shell examples, run as written against a real server and
node: every ```sh block in README.md and docs/*.md is executed, with `bash -e`, and
must exit 0, so an example that no longer works fails the suite.

What the test stands up first is what `make demo DEMO_FLAGS=-d` starts: `armillary up
examples/quickstart -d`, on a port of the test's own (every `127.0.0.1:7400` in an
example is rewritten to it), in a working directory holding a copy of examples/ and
the checkout's .venv, with EDITOR=true. The docs' blocks run first, then the README's
in order; its last block runs `armillary down`.

An HTML comment on the line(s) before a block steers it:
  <!-- doc-test: skip: why -->      not run (another machine, a made-up id, …)
  <!-- doc-test: prints: text -->   run, and its output must contain `text`
so a new example is executed unless its author says why it cannot be.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import up
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]  # README last: `down`
MARK = re.compile(r"^<!-- doc-test: (skip|prints): (.*?) -->$")
BLOCK_DEADLINE_S = 120


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    path: Path
    line: int
    body: str
    skip: str | None = None
    prints: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> Iterator[Block]:
    """The ```sh blocks of one Markdown file, with the marks just above each."""
    lines = path.read_text().splitlines()
    marks: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        if found := MARK.match(text):
            marks.append((found[1], found[2]))
        elif text == "```sh":
            end = lines.index("```", i + 1)
            skip = next((why for kind, why in marks if kind == "skip"), None)
            prints = tuple(what for kind, what in marks if kind == "prints")
            body = "\n".join(lines[i + 1 : end])
            yield Block(path=path, line=i + 1, body=body, skip=skip, prints=prints)
            marks, i = [], end
        elif text:
            marks = []
        i += 1


ALL = [b for path in DOCS for b in blocks(path)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Demo:
    workdir: Path
    port: int
    env: dict[str, str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`make demo DEMO_FLAGS=-d`, on a port and in a directory of this test's own."""
    workdir = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "examples", workdir / "examples")
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    home = workdir / ".armillary"
    port = free_port()
    env = {
        **up.env(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "EDITOR": "true",
    }
    started = subprocess.run(
        [sys.executable, "-m", "armillary", "up", "examples/quickstart", "-d", "--port", str(port)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield Demo(workdir=workdir, port=port, env=env)
    finally:
        subprocess.run(
            [sys.executable, "-m", "armillary", "down"],
            cwd=workdir,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        up.clean_up(None, home)


@pytest.mark.parametrize("block", ALL, ids=[b.name for b in ALL])
def test_the_example_runs(block: Block, demo: Demo) -> None:
    if block.skip:
        pytest.skip(block.skip)
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
