"""Log offsets for `logs --tail` and `--since`, on small files written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from armillary.node.logstream import Checkpoints, read, tail_offset


@pytest.mark.parametrize(
    ("content", "lines", "expected"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc\n", 5, b"a\nb\nc\n"),
        (b"a\nb\nc", 1, b"c"),
        (b"a\nb\nc\n", 0, b""),
        (b"", 3, b""),
        (b"x" * 100_000 + b"\nlast\n", 1, b"last\n"),
    ],
)
def test_tail_offset(tmp_path: Path, content: bytes, lines: int, expected: bytes) -> None:
    path = tmp_path / "output.log"
    path.write_bytes(content)
    assert content[tail_offset(path, lines) :] == expected


def test_checkpoints_give_the_offset_a_while_ago_and_forget_across_rotation(tmp_path: Path) -> None:
    now = [1000.0]
    marks = Checkpoints(clock=lambda: now[0])
    path = tmp_path / "output.log"
    for size, moment in ((10, 1000.0), (50, 1010.0), (90, 1020.0)):
        path.write_bytes(b"x" * size)
        now[0] = moment
        marks.record("a", path)
    now[0] = 1025.0
    assert marks.offset_since("a", 10) == 50  # the size it had at 1010
    assert marks.offset_since("a", 100) == 0  # before we watched: from the start
    path.write_bytes(b"y" * 5)  # copy-truncate rotation
    marks.record("a", path)
    assert marks.offset_since("a", 10) == 0


async def test_read_follows_appends_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_text("one\n")
    chunks = read(path, start=0, follow=False)
    assert [c async for c in chunks] == ["one\n"]


def test_checkpoints_keep_one_mark_per_change_of_size(tmp_path: Path) -> None:
    """A quiet log adds no mark per poll (3,000 replicas polled every 2 s would fill
    memory), and the offset a while ago is still the size it had then."""
    now = [1000.0]
    marks = Checkpoints(clock=lambda: now[0])
    path = tmp_path / "output.log"
    path.write_bytes(b"x" * 10)
    for moment in range(1000, 1100, 2):
        now[0] = float(moment)
        marks.record("a", path)
    path.write_bytes(b"x" * 30)
    now[0] = 1100.0
    marks.record("a", path)
    assert len(marks._marks["a"]) == 2
    now[0] = 1105.0
    assert marks.offset_since("a", 50) == 10  # at 1055 it had 10 bytes
    assert marks.offset_since("a", 2) == 30
