"""The ports tests hand out stay theirs: a reserved port is refused to every other
process, and a test server's port is bound before anything could take it."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from armillary.node.process import DYNAMIC_PORTS
from tests.support import ports
from tests.support.servers import ServerProcess

TRY_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(3)
"""


def test_a_reserved_port_is_refused_to_another_process_and_to_node_daemons() -> None:
    port = ports.free_port()
    assert ports.LOWEST <= port < ports.ephemeral_low()
    assert port not in DYNAMIC_PORTS  # a node never gives it to a replica
    lock = ports.LOCK_DIR / f"{port}.lock"
    other = subprocess.run([sys.executable, "-c", TRY_LOCK, str(lock)], check=False)
    assert other.returncode == 3, "another process could reserve the same port"
    assert ports.free_port() != port  # nor is it handed out twice in this one


def test_a_server_owns_its_port_from_the_moment_it_is_made(tmp_path: Path) -> None:
    server = ServerProcess(home=tmp_path, database_url=None)
    try:
        with socket.socket() as intruder, pytest.raises(OSError) as refused:
            intruder.bind(("127.0.0.1", server.port))
        assert refused.value.errno == errno.EADDRINUSE
    finally:
        server.stop()  # never started: releases the socket
