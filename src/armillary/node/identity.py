"""The node daemon's instance id: which daemon (which data directory) says hello.

`<data_dir>/node-id` holds a random id made the first time a daemon runs on that data
directory; the daemon sends it in every `hello`. The server compares it with the live
session of the same node name: the same id is this daemon coming back (a reconnect
after a lost connection, or a restart that adopts its replicas) and simply replaces
its old session; another id is a second daemon claiming the name, refused unless it
asks for a takeover. It is not a credential (the node key is): it only tells one
daemon from another, so a half-open old session never locks its own daemon out.
Only one daemon runs per data directory (the supervisor's lock), so one id is one
daemon.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

FILE_NAME = "node-id"


def load_or_create(data_dir: Path) -> str:
    """The id kept in `data_dir`, made (0600) the first time; a file that does not
    hold one is replaced, so a damaged file costs only a takeover, never a start."""
    path = data_dir / FILE_NAME
    try:
        found = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        found = ""
    if _valid(found):
        return found
    made = uuid.uuid4().hex
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as sink:
        sink.write(made + "\n")
    os.replace(temporary, path)
    return made


def _valid(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)
