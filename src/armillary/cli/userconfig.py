"""The user's contexts file: named servers with their tokens, and the current one.

Like a kubeconfig, it lets every command find a server from any directory. It lives at
`$ARMILLARY_CONFIG`, else `$XDG_CONFIG_HOME/armillary/config.json`, else
`~/.config/armillary/config.json`. It holds tokens, so it is written with mode 0600
(its directory 0700), whole and atomically: a crash mid-write leaves the old file.
`armillary.cli.context` reads it to resolve a target, `armillary.cli.contexts` edits it
on the user's behalf, and `up` registers the server it starts. Nothing here prints a
token.

    {"current": "quickstart",
     "contexts": {"quickstart": {"server": "http://127.0.0.1:7400", "token": "arm_…",
                                 "home": "/src/project/.armillary"}}}

`home` is set only by `up`: it lets `down` find what to stop from another directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from armillary.errors import Invalid, NotFound

ENV_VAR = "ARMILLARY_CONFIG"
FILE_MODE = 0o600


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One named server: its URL, its token (if any), the `up` home that serves it."""

    server: str
    token: str | None = None
    home: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    current: str | None = None
    contexts: dict[str, Entry] = field(default_factory=dict)

    def entry(self, name: str) -> Entry:
        """The context `name`, or NotFound naming the ones there are."""
        if name not in self.contexts:
            known = ", ".join(sorted(self.contexts)) or "none"
            raise NotFound(
                f"no context {name!r} in {path()} (known: {known}); "
                "see `armillary context list`, add one with `armillary context set`"
            )
        return self.contexts[name]


def path() -> Path:
    """Where the contexts file is, whether or not it exists."""
    if explicit := os.environ.get(ENV_VAR):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "armillary" / "config.json"


def load() -> Config:
    """The contexts file, or an empty one if there is none; Invalid if it is unreadable."""
    where = path()
    try:
        raw = json.loads(where.read_text())
    except FileNotFoundError:
        return Config()
    except (OSError, json.JSONDecodeError) as exc:
        raise Invalid(f"{where}: cannot read the contexts file: {exc}") from exc
    try:
        contexts = {
            str(name): Entry(
                server=str(item["server"]),
                token=item.get("token"),
                home=item.get("home"),
            )
            for name, item in dict(raw.get("contexts") or {}).items()
        }
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise Invalid(f"{where}: not a contexts file ({exc!r})") from exc
    current = raw.get("current")
    return Config(current=str(current) if current else None, contexts=contexts)


def save(config: Config) -> Path:
    """Write `config` atomically with mode 0600, creating its directory (0700)."""
    where = path()
    where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = {
        "current": config.current,
        "contexts": {
            name: {
                k: v
                for k, v in {"server": e.server, "token": e.token, "home": e.home}.items()
                if v is not None
            }
            for name, e in sorted(config.contexts.items())
        },
    }
    tmp = where.with_name(f".{where.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # O_CREAT's mode is masked by the umask, and ignored if it existed
        with os.fdopen(fd, "w") as sink:
            json.dump(document, sink, indent=2)
            sink.write("\n")
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, where)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return where


def put(name: str, entry: Entry, *, make_current: bool) -> Path:
    """Add or replace the context `name`; make it the current one if asked."""
    config = load()
    contexts = {**config.contexts, name: entry}
    current = name if make_current or config.current is None else config.current
    return save(Config(current=current, contexts=contexts))
