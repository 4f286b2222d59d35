"""Which OS user each tenant's processes run as, and the tenant data directories they own.

When the node daemon runs as root it runs every tenant's replicas (and their exec
health checks, and `armillary exec` commands) as an unprivileged user of that tenant
alone: a uid taken from a configured range, mapped from the tenant's name by a hash,
with the same number as its gid and no supplementary groups. No /etc/passwd entry is
needed. The tenant's data directory `<data_dir>/tenants/<tenant>` is owned by that
uid, mode 0700, and is the replica's HOME. When the daemon is not root it cannot
change users: every tenant runs as the daemon's user ("shared-user"), as the node
reports to the server.

Called by `node.lifecycle` (`Tenants.prepare` before each spawn) and
`node.supervisor` (`Tenants.check_reachable` at start). `uid_for`, `parse_range`,
`isolation` and `blocking_dir` are pure.

Invariants: two tenants never share a uid on one node — a tenant's directory records
its uid (its owner), and a tenant whose uid already owns another tenant's directory
is refused (`SpawnError(TenantUidTaken)`), as is a uid that belongs to an account of
the machine; the directories above a tenant's are root's and traversable, never
listable (0711), so a tenant can reach its own directory but cannot list the others.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from armillary.errors import PermanentError, SpawnError

log = logging.getLogger(__name__)

Isolation = Literal["per-tenant-user", "shared-user"]
ENV_VAR = "ARMILLARY_TENANT_UIDS"
TENANTS_DIR_MODE = 0o711  # traversable, not listable
TENANT_DIR_MODE = 0o700
REPLICA_UMASK = 0o077  # what a tenant creates (in /tmp too) is its own by default


@dataclass(frozen=True, slots=True, kw_only=True)
class UidRange:
    """A range of uids (and the gids of the same numbers), both ends included."""

    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


DEFAULT_RANGE = UidRange(first=200000, last=265535)  # 65,536 users, clear of login accounts
DEFAULT_UIDS = str(DEFAULT_RANGE)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunAs:
    """The credentials a tenant's processes get."""

    uid: int
    gid: int


def parse_range(text: str) -> UidRange | None:
    """`"200000-265535"` → that range; `"off"` → None (every tenant runs as the daemon's
    user). Raises ValueError saying what is wrong."""
    cleaned = text.strip()
    if cleaned.lower() == "off":
        return None
    first_text, sep, last_text = cleaned.partition("-")
    if not sep or not first_text.isdigit() or not last_text.isdigit():
        raise ValueError(f"--tenant-uids: expected FIRST-LAST (e.g. {DEFAULT_UIDS}) or off")
    first, last = int(first_text), int(last_text)
    if first < 1000 or last < first or last >= 2**32 - 1:
        raise ValueError(
            f"--tenant-uids: {cleaned} must be FIRST-LAST with 1000 <= FIRST <= LAST < 4294967295"
            " (system accounts live below 1000)"
        )
    return UidRange(first=first, last=last)


def uid_for(tenant: str, uids: UidRange) -> int:
    """The tenant's uid: SHA-256 of its name, modulo the range's size. The same tenant gets
    the same uid on every node and after every restart, so its files stay its own."""
    digest = hashlib.sha256(tenant.encode()).digest()
    return uids.first + int.from_bytes(digest[:8], "big") % uids.size


def isolation(*, euid: int, uids: UidRange | None) -> Isolation:
    """Per-tenant users need root (to change users) and a range to take them from."""
    return "per-tenant-user" if euid == 0 and uids is not None else "shared-user"


def blocking_dir(path: Path, *, mode_of: Callable[[Path], int]) -> Path | None:
    """The first directory from `/` down to `path` that other users cannot traverse
    (no o+x), or None when every one can. `mode_of` gives a directory's st_mode."""
    for directory in [*reversed(path.parents), path]:
        if not mode_of(directory) & stat.S_IXOTH:
            return directory
    return None


class Tenants:
    """The node's tenant directories and the users their processes run as."""

    def __init__(self, root: Path, *, uids: UidRange | None, euid: int) -> None:
        self.root = root
        self.uids = uids
        self.isolation: Isolation = isolation(euid=euid, uids=uids)
        self._owners: dict[int, str] | None = None  # uid → tenant whose directory it owns
        self._ready: dict[str, RunAs | None] = {}

    def check_reachable(self) -> None:
        """Create the tenants directory; with per-tenant users, make sure those users can
        reach it. Raises PermanentError naming the directory that blocks them."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.isolation != "per-tenant-user":
            return
        os.chmod(self.root.parent, TENANTS_DIR_MODE)
        os.chmod(self.root, TENANTS_DIR_MODE)
        blocked = blocking_dir(self.root, mode_of=lambda p: p.stat().st_mode)
        if blocked is not None:
            raise PermanentError(
                f"tenant users cannot reach their data directories under {self.root}: "
                f"{blocked} is not traversable by other users "
                f"(mode {stat.S_IMODE(blocked.stat().st_mode):04o}). Let them pass with "
                f"`chmod o+x {blocked}` (no listing), choose a --data-dir they can reach, "
                f"or run every tenant as the daemon's user with --tenant-uids off "
                f"({ENV_VAR}=off)"
            )

    def directory(self, tenant: str) -> Path:
        return self.root / tenant

    def prepare(self, tenant: str) -> tuple[Path, RunAs | None]:
        """The tenant's data directory (created, owned by its user) and who runs its
        processes (None: the daemon's own user). Raises SpawnError when its uid is not
        free for it on this node."""
        directory = self.directory(tenant)
        if tenant in self._ready:
            return directory, self._ready[tenant]
        if self.isolation != "per-tenant-user" or self.uids is None:
            directory.mkdir(parents=True, exist_ok=True)
            self._ready[tenant] = None
            return directory, None
        uid = uid_for(tenant, self.uids)
        owners = self._load_owners()
        holder = owners.get(uid)
        if holder is not None and holder != tenant:
            raise SpawnError(
                reason="TenantUidTaken",
                message=f"tenant {tenant} maps to uid {uid} in --tenant-uids {self.uids}, "
                f"which tenant {holder} already holds on this node (its data directory "
                f"{self.directory(holder)}); two tenants never share a user. Widen the range, "
                f"or remove {self.directory(holder)} if {holder} is gone for good",
            )
        account = _account(uid)
        if account is not None:
            raise SpawnError(
                reason="TenantUidTaken",
                message=f"tenant {tenant} maps to uid {uid} in --tenant-uids {self.uids}, "
                f"which is the account {account!r} of this machine: choose a range no "
                f"account uses",
            )
        run_as = RunAs(uid=uid, gid=uid)
        _own(directory, run_as)
        owners[uid] = tenant
        self._ready[tenant] = run_as
        return directory, run_as

    def _load_owners(self) -> dict[int, str]:
        """Who holds which uid, as the tenant directories on disk say (read once)."""
        if self._owners is None:
            self._owners = {}
            for entry in sorted(self.root.iterdir()) if self.root.is_dir() else []:
                found = entry.lstat()
                if stat.S_ISDIR(found.st_mode) and found.st_uid != 0:
                    self._owners.setdefault(found.st_uid, entry.name)
        return self._owners


def _account(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _own(directory: Path, run_as: RunAs) -> None:
    """Give the tenant its directory, mode 0700. A directory left by a daemon that ran
    the tenant as another user (root, or another range) is handed over whole; links are
    changed themselves, never followed."""
    directory.mkdir(exist_ok=True)
    if directory.lstat().st_uid != run_as.uid:
        log.info("handing %s over to uid %d", directory, run_as.uid)
        for parent, names, files in os.walk(directory):
            for name in [*names, *files]:
                os.lchown(Path(parent, name), run_as.uid, run_as.gid)
        os.lchown(directory, run_as.uid, run_as.gid)
    os.chmod(directory, TENANT_DIR_MODE)
