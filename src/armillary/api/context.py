"""The local context file (`<home>/context.json`, mode 0600): where the server is and
the admin token, so a CLI on the same machine needs no flags.

The server writes its URL at every start and the admin token only at first start
(it keeps just the token's hash, so it cannot write it again later).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE_NAME = "context.json"


def write(home: Path, *, url: str, token: str | None) -> Path:
    """Record the URL (and the token when given), keeping a token already there."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / FILE_NAME
    data: dict[str, str] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            data = {}
    data["url"] = url
    if token is not None:
        data["token"] = token
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return path
