"""Where the CLI finds the server and its token.

The URL and the token are each taken from the `--server`/`--token` flags, else from
`ARMILLARY_URL`/`ARMILLARY_TOKEN`. What is still missing comes, both together, from
the first of: the context named by `--context` or `ARMILLARY_CONTEXT`; the context
file the local server wrote (`$ARMILLARY_HOME/context.json`, by default
`./.armillary/context.json`: a project directory wins over the user's choice); the
current context of the user's contexts file (`armillary.cli.userconfig`). Failing all
of them, http://127.0.0.1:7400 with no token. A context's token goes only to that
context's server: with `--server`/`ARMILLARY_URL` naming another, it is not used.

`Target.looked` records the places tried, so a refused request without a token can
say where the CLI looked and what to do (`missing_token`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from armillary.cli import userconfig
from armillary.errors import ArmillaryError, Unauthorized

DEFAULT_URL = "http://127.0.0.1:7400"
CONTEXT_ENV = "ARMILLARY_CONTEXT"
NODE_TOKEN_ENV = "ARMILLARY_NODE_TOKEN"  # noqa: S105 (a variable's name, not a token)
"""Where `armillary node` looks for its key before ARMILLARY_TOKEN (`armillary.launcher`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    url: str
    token: str | None
    source: str = "defaults"  # where URL/token came from when no flag or variable gave them
    looked: tuple[str, ...] = ()  # every place tried, in order, for the missing-token hint


def home() -> Path:
    return Path(os.environ.get("ARMILLARY_HOME", ".armillary"))


def saved(directory: Path) -> dict[str, str]:
    """The context file a server wrote in `directory` (its home), or {}."""
    path = directory / "context.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: str(v) for k, v in data.items() if isinstance(k, str) and v is not None}


def resolve(*, url: str | None, token: str | None, name: str | None = None) -> Target:
    """The server and token to use; `name` is the `--context` option, if given."""
    url = url or os.environ.get("ARMILLARY_URL")
    token = token or os.environ.get("ARMILLARY_TOKEN")
    looked = ["--server/--token", "ARMILLARY_URL/ARMILLARY_TOKEN"]
    if url and token:
        return Target(url=url, token=token, source="flags or environment", looked=tuple(looked))
    name = name or os.environ.get(CONTEXT_ENV)
    local = home() / "context.json"
    if name:
        entry = userconfig.load().entry(name)
        looked.append(f"context {name!r} in {userconfig.path()}")
        return Target(
            url=url or entry.server,
            token=token or _own(entry, url),
            source=f"context {name!r}",
            looked=tuple(looked),
        )
    looked.append(f"{local.resolve()}" + ("" if local.exists() else " (absent)"))
    if local.exists():
        found = saved(home())
        return Target(
            url=url or found.get("url") or DEFAULT_URL,
            token=token or found.get("token"),
            source=str(local),
            looked=tuple(looked),
        )
    config = userconfig.load()
    current = config.current
    looked.append(
        f"the current context in {userconfig.path()}"
        + (f" ({current!r})" if current else " (none set)")
    )
    if current and current in config.contexts:
        entry = config.contexts[current]
        return Target(
            url=url or entry.server,
            token=token or _own(entry, url),
            source=f"context {current!r}",
            looked=tuple(looked),
        )
    return Target(url=url or DEFAULT_URL, token=token, looked=tuple(looked))


def _own(entry: userconfig.Entry, url: str | None) -> str | None:
    """The context's token, unless the request goes to a server other than its own."""
    if url is None or url.rstrip("/") == entry.server.rstrip("/"):
        return entry.token
    return None


def missing_token(exc: ArmillaryError, target: Target) -> ArmillaryError:
    """`exc`, and if it is a 401 to a request that carried no token, where the CLI
    looked and what to do; any other error unchanged."""
    if not isinstance(exc, Unauthorized) or target.token:
        return exc
    try:
        names = sorted(userconfig.load().contexts)
    except ArmillaryError:  # an unreadable file: the hint still says where it looked
        names = []
    choice = f" (known: {', '.join(names)})" if names else ""
    return Unauthorized(
        f"{exc}\nNo token for {target.url}: looked at " + "; ".join(target.looked) + ".\n"
        f"Pick a context with `armillary context use NAME`{choice}, "
        "add one with `armillary context set NAME --server URL --token-file FILE`, "
        "or pass --token / set ARMILLARY_TOKEN."
    )
