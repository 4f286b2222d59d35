"""What the kernel says about a process: identity, liveness, and whose log it writes to.

Called by the supervisor when it spawns (to record who it started) and when it starts
again after a restart (to decide what it may adopt). Reads /proc directly: it is
cheap and exact, and psutil is kept out of the daemon's hot path.

Invariant: a process is "the same" only if its pid, its start time in clock ticks
since boot and the boot id all match. Ticks since boot never move when the wall
clock is stepped (psutil's `create_time()` does, by the same step), and pids are
reused (pid_max can be as low as 32768), so a pid alone never identifies a process.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, slots=True, kw_only=True)
class Stat:
    """The fields of /proc/<pid>/stat the supervisor uses."""

    pid: int
    state: str  # R, S, D, Z, …
    ppid: int
    pgid: int
    sid: int
    start_ticks: int

    @property
    def alive(self) -> bool:
        """Running or sleeping: not a zombie, not dead."""
        return self.state not in ("Z", "X", "x")


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """Who a process is, as recorded when it was spawned or adopted."""

    pid: int
    pgid: int
    start_ticks: int  # clock ticks since boot: never moves with the wall clock
    create_time: float  # unix time, as psutil.Process(pid).create_time() reports it
    boot_id: str


def stat(pid: int) -> Stat | None:
    """The process's stat line, or None once it is gone (reaped)."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return Stat(
        pid=pid,
        state=fields[0].decode(),
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        sid=int(fields[3]),
        start_ticks=int(fields[19]),
    )


@functools.cache
def boot_id() -> str:
    """This boot's random id: start ticks of two boots are not comparable."""
    return (PROC / "sys/kernel/random/boot_id").read_text().strip()


@functools.cache
def _clock_ticks_per_s() -> int:
    return os.sysconf("SC_CLK_TCK")


def boot_time() -> float:
    """Unix time of boot, as the kernel computes it now (moves when the clock is stepped)."""
    for line in (PROC / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise RuntimeError("no btime line in /proc/stat")


def identify(pid: int, *, boot_time_s: float) -> Identity | None:
    """The identity of `pid` (a zombie included), or None if it is gone."""
    found = stat(pid)
    if found is None:
        return None
    return Identity(
        pid=pid,
        pgid=found.pgid,
        start_ticks=found.start_ticks,
        create_time=boot_time_s + found.start_ticks / _clock_ticks_per_s(),
        boot_id=boot_id(),
    )


def is_alive(recorded: Identity) -> bool:
    """True if the recorded process still runs: same boot, same start, not a zombie."""
    if recorded.boot_id != boot_id():
        return False
    found = stat(recorded.pid)
    return found is not None and found.alive and found.start_ticks == recorded.start_ticks


def writers(replicas_dir: Path) -> dict[str, list[Stat]]:
    """Live processes whose stdout is `<replicas_dir>/<id>/output.log`, by allocation id.

    Finds replicas (and their children, which inherit stdout) that the state file does
    not know about: spawned in the last moments before the daemon was killed. One stat
    read per process on the machine plus a readlink for each process we may inspect.
    """
    prefix = f"{replicas_dir}/"
    found: dict[str, list[Stat]] = {}
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        try:
            target = os.readlink(PROC / name / "fd" / "1")
        except OSError:  # gone, another user's process, or no stdout
            continue
        if not (target.startswith(prefix) and target.endswith("/output.log")):
            continue
        allocation_id = target[len(prefix) : -len("/output.log")]
        info = stat(int(name))
        if info is not None and info.alive and "/" not in allocation_id:
            found.setdefault(allocation_id, []).append(info)
    return found
