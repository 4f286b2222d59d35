"""Let the node's tenant users reach test directories.

A node daemon running as root runs each tenant's replicas as an unprivileged user of
that tenant (armillary.node.tenancy), and refuses to start when those users cannot
reach its data directory. pytest makes its temporary directories 0700, so a test whose
node runs tenants as their own users (`NodeProcess.tenant_uids` not "off", `armillary
up`) opens the directories that node and its replicas must reach with `open_to_tenants`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def open_to_tenants(path: Path) -> None:
    """Let any user pass through `path` and every directory above it that we own (o+x:
    traverse, not list)."""
    for directory in [path, *path.parents]:
        found = directory.stat()
        if found.st_uid == os.geteuid() and not found.st_mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(found.st_mode) | stat.S_IXOTH)
