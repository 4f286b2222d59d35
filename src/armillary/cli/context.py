"""Where the CLI finds the server and its token.

In order: the `--server`/`--token` flags, `ARMILLARY_URL`/`ARMILLARY_TOKEN`, the
context file the local server wrote (`$ARMILLARY_HOME/context.json`, by default
`./.armillary/context.json`), then http://127.0.0.1:7400 with no token.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:7400"
NODE_TOKEN_ENV = "ARMILLARY_NODE_TOKEN"  # noqa: S105 (a variable's name, not a token)
"""Where `armillary node` looks for its key before ARMILLARY_TOKEN (`armillary.launcher`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    url: str
    token: str | None


def home() -> Path:
    return Path(os.environ.get("ARMILLARY_HOME", ".armillary"))


def resolve(*, url: str | None, token: str | None) -> Target:
    saved: dict[str, str] = {}
    path = home() / "context.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            saved = {}
    return Target(
        url=url or os.environ.get("ARMILLARY_URL") or saved.get("url") or DEFAULT_URL,
        token=token or os.environ.get("ARMILLARY_TOKEN") or saved.get("token"),
    )
