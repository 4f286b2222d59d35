"""Replica log files: where they live, how they are opened, how they are rotated.

Called by the supervisor: `open_append` before each spawn, `rotate_loop` as one
background task for all replicas. The file is `<data_dir>/replicas/<id>/output.log`
(stdout and stderr together) and is kept after the replica is stopped.

Invariant: rotation is copytruncate — copy to `.1` (older copies shift to `.2` … up
to `keep`), then truncate in place. The child's fd is O_APPEND, so it keeps writing
at the new end and never needs to reopen anything; the daemon holds no fd of its own.
Lines written between the end of the copy and the truncate are lost (the known cost
of copytruncate; the window is one syscall wide).

Before it starts a replica's process again (a crash, a restart policy, a timeout),
the daemon appends one marker line (`restart_marker`) through the fd the new process
will inherit: `logs` shows where each run begins and why the last one ended, and
`logs --previous` finds the last finished run between the last two markers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 2.0
FILE_NAME = "output.log"


def path(replicas_dir: Path, allocation_id: str) -> Path:
    """The live log file of one allocation."""
    return replicas_dir / allocation_id / FILE_NAME


def open_append(log_path: Path) -> int:
    """An O_APPEND fd on `log_path` (created with its directory) for a child's stdout.

    The file is the daemon's, mode 0600 in a 0700 directory: the child writes through
    the fd it inherits and can neither reopen it nor read another replica's output.
    """
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


MARKER = b"--- armillary: restarted "
"""How every restart marker line begins (after a newline)."""


def restart_marker(*, at_s: float, restart: int, exit_code: int | None, why: str | None) -> bytes:
    """`--- armillary: restarted at 2026-12-06T23:10:00.123Z (restart 3; exited with
    code 1; 3 in a row; restarting in 0.4s) ---`: the line written before a new run."""
    moment = dt.datetime.fromtimestamp(at_s, dt.UTC).isoformat(timespec="milliseconds")
    ended = why or ("exited" if exit_code is None else f"exited with code {exit_code}")
    detail = f"restart {restart}; {ended}".replace("\n", " ")
    return MARKER + f"at {moment.replace('+00:00', 'Z')} ({detail}) ---\n".encode()


def write_marker(fd: int, log_path: Path, line: bytes) -> None:
    """Append `line` through `fd` (O_APPEND), on a line of its own: after a newline if
    the last run's output did not end with one."""
    with contextlib.suppress(FileNotFoundError), log_path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                line = b"\n" + line
    os.write(fd, line)


def numbered(log_path: Path, n: int) -> Path:
    """The `n`th rotated copy of `log_path` (`.1` the newest)."""
    return log_path.with_name(f"{log_path.name}.{n}")


def rotate(log_path: Path, *, keep: int) -> None:
    """Copy `log_path` to `.1` (shifting older copies, dropping past `keep`), then truncate."""
    for n in range(keep - 1, 0, -1):
        older = numbered(log_path, n)
        if older.exists():
            os.replace(older, numbered(log_path, n + 1))
    if keep > 0:
        shutil.copyfile(log_path, numbered(log_path, 1))  # copies up to the current end
    os.truncate(log_path, 0)


def oversized(paths: Iterable[Path], *, max_bytes: int) -> list[Path]:
    """The files over `max_bytes`: one stat each."""
    found = []
    for candidate in paths:
        try:
            if candidate.stat().st_size > max_bytes:
                found.append(candidate)
        except FileNotFoundError:
            continue
    return found


async def rotate_loop(
    live_paths: Callable[[], Iterable[Path]],
    *,
    max_bytes: int,
    keep: int,
    interval_s: float = CHECK_INTERVAL_S,
) -> None:
    """Every `interval_s`, rotate the logs of running replicas that grew past `max_bytes`.

    The copy runs in a worker thread: a 10 MB copy must not delay a crash restart.
    """
    while True:
        await asyncio.sleep(interval_s)
        try:
            for log_path in oversized(live_paths(), max_bytes=max_bytes):
                await asyncio.to_thread(rotate, log_path, keep=keep)
        except Exception:  # the task boundary: log, try again next round
            log.exception("rotating replica logs failed")
