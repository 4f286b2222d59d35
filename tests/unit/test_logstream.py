"""Log offsets for `logs --tail` and `--since`, on small files written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from armillary.node import logfiles
from armillary.node.logstream import (
    Checkpoints,
    Run,
    Stamper,
    previous_run,
    read,
    read_bytes,
    tail_offset,
)


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
    start, end = tail_offset(path, lines)
    assert (content[start:], end) == (expected, len(content))


async def test_a_tail_not_followed_ends_where_it_was_counted(tmp_path: Path) -> None:
    """A replica writing on while its tail is read (a health check's log line) adds
    nothing to `--tail 2`: two lines, not three."""
    path = tmp_path / "output.log"
    path.write_bytes(b"a\nb\nc\n")
    start, end = tail_offset(path, 2)
    with path.open("ab") as f:
        f.write(b"d\n")
    read_ = [chunk async for chunk, _ in read_bytes(path, start=start, follow=False, until=end)]
    assert b"".join(read_) == b"b\nc\n"


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


def _marker(restart: int) -> bytes:
    return logfiles.restart_marker(at_s=0.0, restart=restart, exit_code=1, why=None)


def test_restart_marker_is_one_line_saying_why() -> None:
    line = logfiles.restart_marker(
        at_s=1_796_598_600.5, restart=3, exit_code=1, why="exited with code 1;\n3 in a row"
    )
    assert line == (
        b"--- armillary: restarted at 2026-12-06T23:10:00.500Z"
        b" (restart 3; exited with code 1; 3 in a row) ---\n"
    )
    assert logfiles.restart_marker(at_s=0, restart=1, exit_code=None, why=None).endswith(
        b"(restart 1; exited) ---\n"
    )


def test_previous_run_is_between_the_last_two_markers(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_bytes(b"first\n" + _marker(1) + b"second\nrun\n" + _marker(2) + b"third\n")
    run = previous_run(path)
    assert run is not None
    assert run.rotated == b"" and run.live == b"second\nrun\n"
    assert path.read_bytes()[run.live_start :].startswith(b"second\n")


def test_previous_run_reaches_into_the_rotated_copy(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    logfiles.numbered(path, 1).write_bytes(b"first\n" + _marker(1) + b"second a\n")
    path.write_bytes(b"second b\n" + _marker(2) + b"third\n")
    run = previous_run(path)
    assert run is not None
    assert (run.rotated, run.live, run.live_start) == (b"second a\n", b"second b\n", 0)
    path.write_bytes(b"first run, never restarted\n")
    logfiles.numbered(path, 1).unlink()
    assert previous_run(path) is None
    path.write_bytes(b"only\n" + _marker(1) + b"now\n")
    assert previous_run(path) == Run(rotated=b"", rotated_at=0.0, live=b"only\n", live_start=0)


def test_stamper_stamps_whole_lines_by_where_they_end() -> None:
    ends: list[int] = []

    def seen_at(offset: int) -> float:
        ends.append(offset)
        return 1_796_598_600.0 + offset

    stamper = Stamper(seen_at)
    assert stamper.feed(b"ab\ncd", end=5) == "2026-12-06T23:10:03.000Z ab\n"
    assert stamper.feed(b"e\n\xc3", end=8) == "2026-12-06T23:10:07.000Z cde\n"
    assert stamper.feed(b"\xa9\n", end=10) == "2026-12-06T23:10:10.000Z é\n"
    assert stamper.flush(end=10) == ""
    assert stamper.feed(b"tail", end=14) == ""
    assert stamper.flush(end=14) == "2026-12-06T23:10:14.000Z tail\n"
    assert ends == [3, 7, 10, 14]


def test_checkpoints_say_when_an_offset_was_first_seen(tmp_path: Path) -> None:
    now = [1000.0]
    marks = Checkpoints(clock=lambda: now[0])
    path = tmp_path / "output.log"
    for size, moment in ((10, 1000.0), (50, 1010.0)):
        path.write_bytes(b"x" * size)
        now[0] = moment
        marks.record("a", path)
    assert marks.seen_at("a", 5) == 1000.0
    assert marks.seen_at("a", 11) == 1010.0
    assert marks.seen_at("a", 51) is None  # newer than the last mark: the caller's now
