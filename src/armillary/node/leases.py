"""Host-wide port leases: which node daemon on this machine has handed out which port.

Called by `node.lifecycle` when it resolves a replica's ports and by `node.supervisor`
when it lets a replica go or adopts what a previous daemon left running.

A bind probe alone cannot tell a free port from one a replica was handed but has not
bound yet (it is starting, sleeping, waiting for its database), and two daemons on one
machine (of one server or of two) that probe at the same moment both see it free. A
lease is an exclusive `flock` on `<directory>/<port>.lock`, held by the daemon for as
long as one of its replicas holds the port; a port another daemon leases is never
handed out, and a fixed port another daemon leases is refused naming that daemon.

Invariants:
- the kernel drops a daemon's leases when it dies, even by `kill -9`, so a lease never
  outlives its holder; a restarted daemon takes the leases of the replicas it adopts
  back at start (in between, the bind probe still guards every port a running replica
  listens on);
- lock files are never removed: unlinking a file that another process holds open would
  let two holders lock two different files of one name;
- a lock file is opened without following symlinks and never truncated to zero while
  held, so a reader sees the holder or nothing.

tests/support/ports.py reserves the ports tests name with the same `lock`, in a
directory of its own and below the range node daemons pick from.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from armillary import errors

log = logging.getLogger(__name__)

ENV_VAR = "ARMILLARY_PORT_LEASES"
ROOT_DIRECTORY = Path("/run/armillary/ports")


def default_directory(*, euid: int) -> Path:
    """Where leases live unless configured: one directory for every root daemon of the
    machine; for another user, a private one under the temporary directory (a daemon
    cannot trust lock files every user may write: give daemons of several users one
    shared `--port-leases` directory instead)."""
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env)
    if euid == 0:
        return ROOT_DIRECTORY
    return private_directory(euid=euid)


def private_directory(*, euid: int) -> Path:
    """The default of a daemon that is not root: under the temporary directory, in a
    directory of its user's that `Leases.open` checks nobody else owns or may write."""
    return Path(tempfile.gettempdir()) / f"armillary-{euid}" / "ports"


def lock(directory: Path, port: int) -> int | None:
    """An exclusive lock on `port`'s lock file in `directory`: its descriptor (closing it
    releases the lock), or None while another open file of it holds the lock."""
    fd = os.open(
        directory / f"{port}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Leases:
    """The ports one daemon leases, each for the replicas (owners) that hold it."""

    def __init__(self, directory: Path, *, holder: str, private: bool = False) -> None:
        self.directory = directory
        self._private = private  # ours alone: refuse it when another user owns or may write it
        self._holder = holder  # who we are, written into each lock file we hold
        self._fds: dict[int, int] = {}
        self._owners: dict[int, set[str]] = {}
        self._ports: dict[str, set[int]] = {}

    def open(self) -> None:
        """Create the directory (refusing one that is not a directory) before any lease.

        Raises `errors.PermanentError` naming the directory when it cannot be used."""
        try:
            if self._private:
                self.directory.parent.mkdir(exist_ok=True, mode=0o700)
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o755)
            info = os.lstat(self.directory)
        except OSError as exc:
            raise errors.PermanentError(
                f"cannot use the port lease directory {self.directory}: {exc}"
            ) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise errors.PermanentError(
                f"the port lease directory {self.directory} is not a directory"
            )
        if self._private:
            for each in (self.directory, self.directory.parent):
                found = os.lstat(each)
                if (
                    found.st_uid != os.geteuid()
                    or found.st_mode & 0o022
                    or stat.S_ISLNK(found.st_mode)
                ):
                    raise errors.PermanentError(
                        f"the port lease directory {each} is not this user's alone "
                        f"(owner uid {found.st_uid}, mode {stat.S_IMODE(found.st_mode):04o}): "
                        f"remove it, or choose one with --port-leases or {ENV_VAR}"
                    )

    def take(self, port: int, *, owner: str) -> str | None:
        """Lease `port` for `owner` (an allocation id). None when this daemon now leases
        it; else who does (from their lock file)."""
        if port in self._fds:
            self._owners[port].add(owner)
            self._ports.setdefault(owner, set()).add(port)
            return None
        try:
            fd = lock(self.directory, port)
        except OSError as exc:
            return f"nobody: its lease file cannot be opened ({exc.strerror or exc})"
        if fd is None:
            return self.holder(port)
        text = f"{self._holder}, for replica {owner}\n".encode()
        try:
            os.pwrite(fd, text, 0)  # then cut: a reader never sees an empty file
            os.ftruncate(fd, len(text))
        except OSError as exc:  # a full disk: the lease holds, only its label is missing
            log.warning("cannot label the lease of port %d: %s", port, exc)
        self._fds[port] = fd
        self._owners[port] = {owner}
        self._ports.setdefault(owner, set()).add(port)
        return None

    def keep(self, owner: str, ports: Iterable[int]) -> None:
        """Release every lease of `owner` but those of `ports`."""
        wanted = set(ports)
        for port in self._ports.get(owner, set()) - wanted:
            self._drop(port, owner)

    def release(self, owner: str) -> None:
        """`owner` holds no port any more."""
        self.keep(owner, ())
        self._ports.pop(owner, None)

    def drop(self, port: int, *, owner: str) -> None:
        """`owner` no longer holds `port`."""
        if port in self._ports.get(owner, set()):
            self._drop(port, owner)

    def holds(self, port: int) -> bool:
        return port in self._fds

    def holder(self, port: int) -> str:
        """Who leases `port`, as its lock file says."""
        try:
            said = (self.directory / f"{port}.lock").read_text(errors="replace").strip()
        except OSError:
            said = ""
        return said or "another process"

    def close(self) -> None:
        """Release every lease (the daemon is stopping)."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._owners.clear()
        self._ports.clear()

    def _drop(self, port: int, owner: str) -> None:
        self._ports[owner].discard(port)
        owners = self._owners[port]
        owners.discard(owner)
        if not owners:
            del self._owners[port]
            os.close(self._fds.pop(port))
