"""The shell examples of the README and docs/*.md: each ```sh block with the
`<!-- doc-test: … -->` marks above it (tests/e2e/test_docs.py runs them; the CLI's
walk-through runs the README's)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARK = re.compile(r"^<!-- doc-test: (skip|prints): (.*?) -->$")


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
