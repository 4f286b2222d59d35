"""Immutable checkouts of release tags, cached per commit on the node.

A replica whose allocation names a `checkout` (a release's process artifact) runs
from `<data_dir>/checkouts/<commit>`, never from a working tree that can move under
it: the tree is exported with `git archive <commit>` from the release's repository,
extracted into a temporary directory, made read-only, and renamed into place in one
step — so a checkout either exists complete or not at all, and a daemon killed
mid-way leaves only a temporary directory that the next attempt replaces.
Checkouts are the daemon's and readable by everyone (directories 0555, files keep
their read and execute bits, lose every write bit), so replicas running as tenant
users (`node.tenancy`) can run them but not change them.

Called by `node.supervisor` (`ensure` before the first spawn of such a replica) and
`node.lifecycle` (`location` for its working directory). One extraction per commit
at a time, however many replicas wait for it.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

from armillary.errors import CheckoutFailed
from armillary.protocol import Checkout

GIT_TIMEOUT_S = 300.0


def location(root: Path, checkout: Checkout) -> Path:
    """Where the checkout of `checkout.commit` lives (whether or not it exists yet)."""
    return root / checkout.commit


class Checkouts:
    """The node's cache of release checkouts under `root`."""

    def __init__(self, root: Path, *, cwd: Path) -> None:
        self.root = root
        self._cwd = cwd  # a relative repository path is relative to the daemon's cwd
        self._pending: dict[str, asyncio.Future[Path]] = {}

    def ready(self, checkout: Checkout) -> bool:
        return location(self.root, checkout).is_dir()

    async def ensure(self, checkout: Checkout) -> Path:
        """The checkout's directory, exported first if it is not there yet."""
        target = location(self.root, checkout)
        if target.is_dir():
            return target
        waiting = self._pending.get(checkout.commit)
        if waiting is None:
            waiting = asyncio.ensure_future(asyncio.to_thread(self._export, checkout, target))
            self._pending[checkout.commit] = waiting
            waiting.add_done_callback(lambda _: self._pending.pop(checkout.commit, None))
        return await asyncio.shield(waiting)

    def _export(self, checkout: Checkout, target: Path) -> Path:
        repository = self._cwd / checkout.repository  # an absolute path stays as it is
        try:
            archived = subprocess.run(
                ["git", "-C", str(repository), "archive", "--format=tar", checkout.commit],
                capture_output=True,
                timeout=GIT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CheckoutFailed(f"git archive {checkout.commit} in {repository}: {exc}") from None
        if archived.returncode != 0:
            said = archived.stderr.decode(errors="replace").strip().splitlines()
            raise CheckoutFailed(
                f"git archive {checkout.commit} in {repository}: "
                f"{said[-1] if said else f'exit code {archived.returncode}'}"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # whatever the daemon's umask: tenant users read checkouts
        scratch = self.root / f".{checkout.commit}.{os.getpid()}.tmp"
        shutil.rmtree(scratch, ignore_errors=True)
        with tarfile.open(fileobj=io.BytesIO(archived.stdout)) as tar:
            tar.extractall(scratch, filter="data")  # no absolute paths, no escapes
        scratch.chmod(0o755)
        _read_only(scratch)
        try:
            scratch.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent winner: a real failure
                raise
            _remove(scratch)
        return target


def _read_only(root: Path) -> None:
    """Take write permission away from every file and directory of a checkout."""
    writable = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    for directory, names, files in os.walk(root, topdown=False):
        for name in [*files, *names]:
            path = Path(directory, name)
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~writable)
    root.chmod(root.stat().st_mode & ~writable)


def _remove(root: Path) -> None:
    for directory, names, _files in os.walk(root):
        for name in names:
            Path(directory, name).chmod(0o755)
    root.chmod(0o755)
    shutil.rmtree(root, ignore_errors=True)
