"""Let the node's tenant users reach test directories.

A node daemon running as root runs each tenant's replicas as an unprivileged user of
that tenant (armillary.node.tenancy), and refuses to start when those users cannot
reach its data directory. pytest makes its temporary directories 0700, so every test
directory a node or a replica must reach goes through `open_to_tenants` first.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def open_to_tenants(path: Path, *, writable: bool = False) -> None:
    """Let any user pass through `path` and every directory above it that we own (o+x:
    traverse, not list). `writable` also lets them create files in `path` and in the
    directories already in it, and write the files already there (a record directory
    that replicas of several tenants append to)."""
    for directory in [path, *path.parents]:
        found = directory.stat()
        if found.st_uid == os.geteuid() and not found.st_mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(found.st_mode) | stat.S_IXOTH)
    if writable:
        path.chmod(0o1777)  # sticky, like /tmp: nobody removes what another wrote
        for child in path.iterdir():
            child.chmod(0o1777 if child.is_dir() else 0o666)
