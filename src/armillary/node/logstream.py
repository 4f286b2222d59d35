"""Reading a replica's log file for `logs`: the last lines, then new output as it comes.

Replicas write straight to their files (the daemon is not in the data path, so it
can restart without touching them), which leaves lines without timestamps. For
`--since`, the daemon notes each file's size every couple of seconds (`Checkpoints`);
a request for "the last 5 minutes" starts at the offset the file had then — to within
one checkpoint interval, and from the start of the file for times before this daemon
started watching.

The same checkpoints give `--timestamps`: a line is stamped with the time of the first
checkpoint at which the file held it — when the node first saw it, at most one
interval after it was written — or, for a line newer than the last checkpoint, the
time it is read (a followed line: within one poll of being written). A line written
before the daemon started watching carries the time of its first checkpoint.

`--previous` reads the last finished run: the output between the last two restart
markers the daemon wrote (`logfiles.MARKER`), reaching into the newest rotated copy
when the run began before the last rotation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from armillary.node import logfiles

CHUNK_BYTES = 64 * 1024
FOLLOW_POLL_S = 0.1
KEEP_CHECKPOINTS = 3600  # marks of a change of size: an hour of a log that always grows


class Checkpoints:
    """(time, size) pairs per log file, recorded by the daemon's periodic task."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._marks: dict[str, deque[tuple[float, int]]] = {}

    def record(self, key: str, path: Path) -> None:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        marks = self._marks.setdefault(key, deque(maxlen=KEEP_CHECKPOINTS))
        if marks and size == marks[-1][1]:
            return  # unchanged: the last mark still says what the size was until now
        if marks and size < marks[-1][1]:
            marks.clear()  # the file was rotated (truncated): older offsets mean nothing now
        marks.append((self._clock(), size))

    def forget(self, key: str) -> None:
        self._marks.pop(key, None)

    def seen_at(self, key: str, offset: int) -> float | None:
        """When the file was first seen holding `offset` bytes (None: not yet)."""
        for moment, size in self._marks.get(key, ()):
            if size >= offset:
                return moment
        return None

    def offset_since(self, key: str, since_s: float) -> int:
        """The offset the file had `since_s` seconds ago (0 if we do not know)."""
        cutoff = self._clock() - since_s
        offset = 0
        for moment, size in self._marks.get(key, ()):
            if moment <= cutoff:
                offset = size
            else:
                break
        return offset


def tail_offset(path: Path, lines: int) -> tuple[int, int]:
    """Where the last `lines` lines of the file start, and where the file ended when
    they were counted: a replica that writes on, meanwhile, must not add lines to a
    tail that is not followed (read it with `until=` the end)."""
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        return _tail_start(f, end, lines), end


def _tail_start(f: BinaryIO, end: int, lines: int) -> int:
    """The offset where the last `lines` lines before `end` start, reading backwards."""
    if lines <= 0:
        return end
    buffer = b""
    position = end
    while position > 0:
        step = min(CHUNK_BYTES, position)
        position -= step
        f.seek(position)
        buffer = f.read(step) + buffer
        if buffer.rstrip(b"\n").count(b"\n") >= lines:
            break
    body = buffer[:-1] if buffer.endswith(b"\n") else buffer  # the final newline ends a line
    index = len(body)
    for _ in range(lines):
        index = body.rfind(b"\n", 0, index)
        if index < 0:
            return position
    return position + index + 1


async def read(path: Path, *, start: int, follow: bool) -> AsyncIterator[str]:
    """Text from `start` to the end; with `follow`, then whatever is appended, across
    copy-truncate rotations, until cancelled."""
    async for chunk, _ in read_bytes(path, start=start, follow=follow):
        yield chunk.decode("utf-8", errors="replace")


async def read_bytes(
    path: Path, *, start: int, follow: bool, until: int | None = None
) -> AsyncIterator[tuple[bytes, int]]:
    """As `read`, in bytes, each chunk with the file offset where it ends; without
    `follow`, no further than `until` (when given)."""
    position = start
    while True:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if until is not None and not follow:
            size = min(size, until)
        if size < position:
            position = 0  # rotated: the live file starts over
        if size > position:
            with path.open("rb") as f:
                f.seek(position)
                while position < size and (chunk := f.read(min(CHUNK_BYTES, size - position))):
                    position += len(chunk)
                    yield chunk, position
        elif not follow:
            return
        if not follow:
            return
        await asyncio.sleep(FOLLOW_POLL_S)


def stamp(moment_s: float) -> str:
    """RFC 3339 in UTC with milliseconds: `2026-12-06T23:10:00.123Z`."""
    text = dt.datetime.fromtimestamp(moment_s, dt.UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


class Stamper:
    """Cuts chunks of a file into lines and prefixes each with when it was seen.

    `seen_at(offset)` answers for the line that ends at `offset` in the file; a line
    not yet ended waits for the next chunk (or `flush`)."""

    def __init__(self, seen_at: Callable[[int], float]) -> None:
        self._seen_at = seen_at
        self._pending = b""

    def feed(self, chunk: bytes, *, end: int) -> str:
        data, self._pending = self._pending + chunk, b""
        *lines, self._pending = data.split(b"\n")
        offset = end - len(data)
        stamped = []
        for line in lines:
            offset += len(line) + 1
            stamped.append(self._line(line, offset))
        return "".join(stamped)

    def flush(self, *, end: int) -> str:
        """The line still waiting for its newline, stamped and ended."""
        line, self._pending = self._pending, b""
        return self._line(line, end) if line else ""

    def _line(self, line: bytes, end: int) -> str:
        return f"{stamp(self._seen_at(end))} {line.decode('utf-8', errors='replace')}\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One finished run's output: the part still in the newest rotated copy (written
    before its `rotated_at`), then the part in the live file from `live_start`."""

    rotated: bytes
    rotated_at: float
    live: bytes
    live_start: int


def previous_run(path: Path) -> Run | None:
    """The output of the last finished run of the replica logging to `path`: between
    the last two restart markers (or the oldest kept output and the last marker);
    None when no marker is kept (it never restarted, or too long ago)."""
    older = logfiles.numbered(path, 1)
    try:
        rotated, rotated_at = older.read_bytes(), older.stat().st_mtime
    except FileNotFoundError:
        rotated, rotated_at = b"", 0.0
    try:
        live = path.read_bytes()
    except FileNotFoundError:
        live = b""
    whole = rotated + live
    markers = list(_markers(whole))
    if not markers:
        return None
    end = markers[-1]
    begin = whole.index(b"\n", markers[-2]) + 1 if len(markers) > 1 else 0
    cut = len(rotated)
    return Run(
        rotated=whole[begin : min(end, cut)],
        rotated_at=rotated_at,
        live=whole[max(begin, cut) : end],
        live_start=max(begin - cut, 0),
    )


def _markers(data: bytes) -> Iterator[int]:
    """Where each restart marker line starts in `data`."""
    if data.startswith(logfiles.MARKER):
        yield 0
    at = data.find(b"\n" + logfiles.MARKER)
    while at >= 0:
        yield at + 1
        at = data.find(b"\n" + logfiles.MARKER, at + 1)
