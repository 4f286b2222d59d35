"""Reading a replica's log file for `logs`: the last lines, then new output as it comes.

Replicas write straight to their files (the daemon is not in the data path, so it
can restart without touching them), which leaves lines without timestamps. For
`--since`, the daemon notes each file's size every couple of seconds (`Checkpoints`);
a request for "the last 5 minutes" starts at the offset the file had then — to within
one checkpoint interval, and from the start of the file for times before this daemon
started watching.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path

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


def tail_offset(path: Path, lines: int) -> int:
    """The offset where the last `lines` lines of the file start."""
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
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
    position = start
    while True:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < position:
            position = 0  # rotated: the live file starts over
        if size > position:
            with path.open("rb") as f:
                f.seek(position)
                while chunk := f.read(CHUNK_BYTES):
                    position += len(chunk)
                    yield chunk.decode("utf-8", errors="replace")
        elif not follow:
            return
        if not follow:
            return
        await asyncio.sleep(FOLLOW_POLL_S)
