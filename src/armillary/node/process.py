"""Process primitives of the node daemon: environment, port check, spawn, watch, reap.

Called by the supervisor (replicas) and by health checks (exec probes). Everything
here is synchronous and fast, so a crashed replica is respawned inside the event-loop
callback that saw it exit.

Invariants: every process is spawned in its own session and process group (pgid ==
pid), so signals reach its whole tree and a killed daemon does not take it along; the
daemon keeps no copy of a child's log fd; the supervisor, never `subprocess`, reaps
children (see `spawn`), so an exit code is read exactly once, by whoever watches it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from armillary.errors import SpawnError
from armillary.node.tenancy import REPLICA_UMASK, RunAs
from armillary.protocol import AllocationSpec

log = logging.getLogger(__name__)

BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER")


def port_env_name(port_name: str) -> str:
    """`metrics-admin` → `PORT_METRICS_ADMIN`."""
    return "PORT_" + port_name.upper().replace("-", "_")


def environment(
    spec: AllocationSpec,
    *,
    ports: Mapping[str, int],
    base: Mapping[str, str],
    tenant_dir: Path,
    cwd: Path,
    own_user: bool = False,
) -> tuple[dict[str, str], Path]:
    """The env and working directory a replica runs with. Pure.

    A small base from the daemon's own environment, then `spec.env`, then what
    Armillary sets (which wins): ARMILLARY_*, PORT (the first port), PORT_<NAME>.
    A relative `spec.cwd` is relative to `cwd` (the daemon's working directory).
    With `own_user` (the tenant runs as its own user) HOME is the tenant's data
    directory and the daemon's USER is not passed on: it names someone else.
    """
    env = {key: base[key] for key in BASE_ENV_KEYS if key in base}
    if own_user:
        env.pop("USER", None)
        env["HOME"] = str(tenant_dir)
    env.update(spec.env)
    env.update(
        ARMILLARY_TENANT=spec.tenant,
        ARMILLARY_COMPONENT=spec.component,
        ARMILLARY_REPLICA=spec.name,
        ARMILLARY_ALLOCATION=spec.id,
        ARMILLARY_DATA_DIR=str(tenant_dir),
    )
    for i, (name, port) in enumerate(ports.items()):
        if i == 0:
            env["PORT"] = str(port)
        env[port_env_name(name)] = str(port)
    return env, cwd / spec.cwd if spec.cwd else cwd


DYNAMIC_PORTS = range(20000, 32000)


def parse_ports(text: str) -> range:
    """`"20000-31999"` → that range of ports (both ends in it). Raises ValueError saying
    what is wrong."""
    first_text, sep, last_text = text.strip().partition("-")
    if not sep or not first_text.isdigit() or not last_text.isdigit():
        raise ValueError(f"--dynamic-ports: expected FIRST-LAST (e.g. 20000-31999), got {text!r}")
    first, last = int(first_text), int(last_text)
    if not 1024 <= first <= last <= 65535:
        raise ValueError(
            f"--dynamic-ports: {text} must be FIRST-LAST with 1024 <= FIRST <= LAST <= 65535"
        )
    return range(first, last + 1)


def pick_ports(
    wanted: Mapping[str, int],
    *,
    previous: Mapping[str, int],
    taken: set[int],
    address: str,
    lease: Callable[[int], bool] = lambda port: True,
    unlease: Callable[[int], None] = lambda port: None,
    dynamic: range = DYNAMIC_PORTS,
) -> dict[str, int]:
    """Resolve a replica's ports: a fixed port stays as asked; a dynamic one (0) keeps the
    port it had if that is still free, else takes a free port in `dynamic` that no
    other replica of this node holds, that `lease` grants (no other daemon on the
    machine has handed it out: `node.leases`) and that can be bound now. The node picks
    because only the node can see which ports its machine really has free. A port
    leased but then refused by the bind probe is given back with `unlease`.

    The search starts at a random port (as Nomad picks its dynamic ports), so daemons on
    one machine rarely even contend for the same lease."""
    resolved: dict[str, int] = {}
    for name, port in wanted.items():
        if port:
            resolved[name] = port
            continue
        again = previous.get(name)
        if again and again not in taken and again not in resolved.values() and lease(again):
            if _bindable(again, address):
                resolved[name] = again
                continue
            unlease(again)
        start = secrets.randbelow(len(dynamic))
        for candidate in (*dynamic[start:], *dynamic[:start]):
            if candidate in taken or candidate in resolved.values() or not lease(candidate):
                continue
            if _bindable(candidate, address):
                resolved[name] = candidate
                break
            unlease(candidate)
        else:
            raise SpawnError(reason="PortUnavailable", message=f"no free port left for {name}")
    return resolved


def _bindable(port: int, address: str) -> bool:
    try:
        check_ports({"probe": port}, address=address)
    except SpawnError:
        return False
    return True


def check_ports(ports: Mapping[str, int], *, address: str) -> None:
    """Raise `SpawnError(PortInUse)` if a port cannot be bound on `address`.

    SO_REUSEADDR is set on purpose: on Linux it still fails against a listening
    socket or a bound one without the flag, but not against TIME_WAIT connections a
    crashed instance (or our own health probes) left on the port, which would
    otherwise block the immediate restart for a minute.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for name, port in ports.items():
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    reason, what = "PortInUse", "in use"
                else:
                    reason, what = "PortUnavailable", f"unusable ({exc.strerror or exc})"
                raise SpawnError(
                    reason=reason, message=f"port {port} ({name}) is {what} on {address}"
                ) from exc
            except OverflowError as exc:
                raise SpawnError(
                    reason="PortUnavailable", message=f"port {port} ({name}) is out of range"
                ) from exc


def spawn(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdout: int,
    stderr: int,
    run_as: RunAs | None = None,
) -> int:
    """Start `argv` in a new session, as a direct child; return its pid.

    With `run_as`, the child runs as that uid and gid with no supplementary groups and
    umask 077 (the working directory is entered before the switch, as root).
    Raises `SpawnError` when the command or the working directory cannot be used.
    """
    if not argv:
        raise SpawnError(reason="InvalidCommand", message="the command is empty")
    try:
        child = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            close_fds=True,
            **credentials(run_as),
        )
    except FileNotFoundError as exc:
        if exc.filename is not None and str(exc.filename) == str(cwd):
            raise SpawnError(
                reason="WorkingDirectoryNotFound", message=f"no such directory: {cwd}"
            ) from exc
        raise SpawnError(reason="CommandNotFound", message=f"command not found: {argv[0]}") from exc
    except PermissionError as exc:
        who = "" if run_as is None else f" as the tenant's user (uid {run_as.uid})"
        raise SpawnError(
            reason="PermissionDenied", message=f"cannot execute {argv[0]}{who}: {exc.strerror}"
        ) from exc
    except OSError as exc:
        raise SpawnError(reason="SpawnFailed", message=f"cannot start {argv[0]}: {exc}") from exc
    except ValueError as exc:  # a NUL byte in the command or the environment
        raise SpawnError(reason="InvalidSpec", message=f"cannot start {argv[0]}: {exc}") from exc
    # We reap the child ourselves (pidfd + waitpid). Marking the Popen settled keeps its
    # finaliser from warning and from reaping our child behind our back via
    # subprocess._active, which would lose the exit code.
    child.returncode = 0
    return child.pid


def credentials(run_as: RunAs | None) -> dict[str, Any]:
    """The `subprocess.Popen` arguments that make a child run as `run_as` (none for
    None: it stays the daemon's user)."""
    if run_as is None:
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": [], "umask": REPLICA_UMASK}


def kill_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal a whole process group; False if it has no members left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def reap(pid: int) -> int | None:
    """The exit code of an exited child (negative: killed by that signal).

    None when it is not our child (adopted after a daemon restart: its parent is init)
    or was reaped already.
    """
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if reaped == 0:
        return None
    return os.waitstatus_to_exitcode(status)


class Watch:
    """Calls `on_exit(exit_code)` once, from the event loop, when `pid` exits.

    Built on a pidfd, so it works for children and adopted non-children alike. On
    exit it first SIGKILLs the process group, so nothing the leader left behind runs on
    (a child of ours is not reaped yet at that point, so its pgid cannot have been
    reused), then reaps. `detach()` stops watching without touching the process (the
    daemon is closing and leaves it running).
    """

    __slots__ = ("_loop", "_on_exit", "_pidfd", "pgid", "pid")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        pid: int,
        pgid: int,
        pidfd: int,
        on_exit: Callable[[int | None], None],
    ) -> None:
        self._loop = loop
        self.pid = pid
        self.pgid = pgid
        self._pidfd: int | None = pidfd
        self._on_exit = on_exit
        loop.add_reader(pidfd, self._exited)

    @classmethod
    def open(
        cls,
        loop: asyncio.AbstractEventLoop,
        *,
        pid: int,
        pgid: int,
        on_exit: Callable[[int | None], None],
    ) -> Watch:
        """Watch `pid`; raises ProcessLookupError if it is already gone (reaped)."""
        return cls(loop, pid=pid, pgid=pgid, pidfd=os.pidfd_open(pid), on_exit=on_exit)

    @property
    def active(self) -> bool:
        return self._pidfd is not None

    def detach(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _exited(self) -> None:
        self.detach()
        kill_group(self.pgid, signal.SIGKILL)
        code = reap(self.pid)
        try:
            self._on_exit(code)
        except Exception:  # the loop boundary: the callback is someone else's code
            log.exception("handling the exit of pid %d failed", self.pid)


async def run(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    run_as: RunAs | None = None,
    output_max_bytes: int = 4096,
) -> tuple[int | None, str]:
    """Run a short command to completion: its exit code and the start of its output.

    Cancelling (a timeout, a stopped replica) kills its whole group; the leader is
    still reaped in the background, so no zombie is left behind.
    """
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    try:
        pid = spawn(argv, env=env, cwd=cwd, stdout=write_fd, stderr=write_fd, run_as=run_as)
    finally:
        os.close(write_fd)
    try:
        exited: asyncio.Future[int | None] = loop.create_future()

        def done(code: int | None) -> None:
            if not exited.done():
                exited.set_result(code)

        watch = Watch.open(loop, pid=pid, pgid=pid, on_exit=done)
        try:
            code = await exited
        finally:
            if watch.active:  # cancelled: the watch stays on to reap it once it dies
                kill_group(pid, signal.SIGKILL)
        os.set_blocking(read_fd, False)
        try:
            output = os.read(read_fd, output_max_bytes)
        except BlockingIOError:
            output = b""
        return code, output.decode(errors="replace").strip()
    finally:
        os.close(read_fd)
