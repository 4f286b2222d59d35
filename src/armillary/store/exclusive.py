"""One server per SQLite database file.

SQLite has no way to tell several server processes apart: two would both run the
controllers and both believe they hold every node's session. `claim(url)` takes an
exclusive `flock` on `<database>.lock` beside the file, held as long as the process
lives (the kernel drops it when the process dies, kill -9 included, so a stale lock
file never blocks a restart), and writes the holder's pid into it. A second server
on the same file gets `PermanentError` naming the file and the pid holding it.
Postgres needs none of this: its replicas elect a leader (`store.leader`).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from armillary.errors import PermanentError


def lock_path(url: str) -> Path | None:
    """The lock file of the SQLite database at `url`; None for Postgres or memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:":
        return None
    return Path(database).with_name(Path(database).name + ".lock")


def claim(url: str) -> IO[str] | None:
    """Hold the database at `url` for this process (keep the returned file open for
    as long as the server runs); `PermanentError` if another process holds it."""
    path = lock_path(url)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        by = f"process {holder}" if holder.isdigit() else "another process"
        raise PermanentError(
            f"the SQLite database {path.with_suffix('')} is in use by another server "
            f"({by} holds {path}); one server per SQLite file: stop it, or use Postgres "
            "(ARMILLARY_DATABASE_URL) to run several"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
