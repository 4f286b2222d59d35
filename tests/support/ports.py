"""Ports for the processes tests start, without the bind-then-close race.

Binding port 0, reading the number and closing the socket leaves a window in which
any other process (another test run on the same machine, a client's outgoing
connection) may take the port before the child binds it. Two ways out, by case:

- A server the test starts gets the socket itself: `bound_socket()` binds it here,
  `armillary server --fd` inherits it and listens on it. The port is never free.
- A port that must be *named* before whoever binds it exists (a replica's port in the
  supervisor's spec, `armillary up --port`, an address where nothing listens) comes
  from `free_port()`: a port just below the range node daemons pick replicas' ports
  from (node/process.py DYNAMIC_PORTS, itself below the kernel's ephemeral range), so
  that no daemon, no bind to port 0 and no outgoing connection is ever given it,
  reserved across processes by an exclusive lock on a file named after it and held
  until this process exits: the lock node daemons lease their replicas' ports with
  (node/leases.py), in a directory of its own (a replica's fixed port that the test
  itself leased would be refused to the daemon). Two test runs on one machine therefore
  never pick the same port, and a port something else already listens on is skipped.
- `free_ports(n)` reserves n consecutive such ports, to give a node daemon as its
  `--dynamic-ports` range: only that daemon (and those the test gives the same range)
  ever hands them out.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
from pathlib import Path

from armillary.node import leases
from armillary.node.process import DYNAMIC_PORTS

LOCK_DIR = Path(tempfile.gettempdir()) / "armillary-test-ports"
_held: list[int] = []  # lock file descriptors, released when the process exits


def bound_socket(port: int = 0) -> socket.socket:
    """A TCP socket bound to 127.0.0.1 (`port` 0: one the kernel picks), not listening,
    inheritable, for a child to serve on. SO_REUSEADDR lets a restarted server take
    back its port while old connections sit in TIME_WAIT."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.set_inheritable(True)
    return sock


def ephemeral_low() -> int:
    """The lowest port the kernel hands out for port 0 and outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Exclusive; below both the nodes' range and the kernel's (on a machine whose ephemeral
# range starts lower than usual, below that too).
HIGHEST = min(DYNAMIC_PORTS.start, ephemeral_low())
LOWEST = HIGHEST - 8000


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nobody else listens on or will be handed, reserved for the
    rest of this test process (see the module docstring)."""
    return free_ports(1).start


def free_ports(count: int) -> range:
    """`count` consecutive ports as `free_port()` reserves one: every one of them free
    now and held for the rest of this test process."""
    LOCK_DIR.mkdir(exist_ok=True)
    for _ in range(200):
        first = random.randrange(LOWEST, HIGHEST - count + 1)
        block = range(first, first + count)
        fds: list[int] = []
        for port in block:
            fd = leases.lock(LOCK_DIR, port)
            if fd is None:  # another test process (or this one) holds it
                break
            fds.append(fd)
            if not _bindable(port):  # something else listens there
                break
        else:
            _held.extend(fds)
            return block
        for fd in fds:
            os.close(fd)
    raise RuntimeError(f"no {count} free ports between {LOWEST} and {HIGHEST} after 200 tries")
