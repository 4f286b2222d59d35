"""`GET /api/v1/doctor`: the server checks itself for `armillary doctor`.

Each check says how one thing stands (`ok`, `warn`, `fail`, or `n/a` when it cannot
apply here) in one line, and on `warn`/`fail` what to do. The route itself never
fails on a broken part: a store that does not answer is a `fail` check, so the CLI
can still show every other finding. Checks that need the caller's side (can the
server be reached, do the CLI's and the server's versions agree) are the CLI's.

Nothing secret is ever in a finding: the secret key is described by where it comes
from and whether it opens the store's key check, never by its value.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from armillary import __version__, timestamps, wire
from armillary.api import openapi
from armillary.api.security import Db, Viewer
from armillary.auth import keys
from armillary.auth import secrets as vaults
from armillary.config import Settings
from armillary.store import nodes
from armillary.store import secrets as sealed
from armillary.store.database import Database

router = APIRouter(prefix="/api/v1", tags=["health"])

STALE_HEARTBEATS = 3
"""A connected node whose last heartbeat is older than this many intervals is stale."""
MAX_CLOCK_SKEW_S = 1.0
"""A node's clock further than this from the server's is worth fixing (NTP keeps
machines within milliseconds)."""

Check = dict[str, Any]


def _check(name: str, status: str, finding: str, fix: str | None = None) -> Check:
    found: Check = {"name": name, "status": status, "finding": finding}
    if fix is not None:
        found["fix"] = fix
    return found


@router.get(
    "/doctor", summary="Check the server, its store and its nodes", **openapi.answer(wire.Doctor)
)
async def doctor(request: Request, db: Db, _who: Viewer) -> dict[str, Any]:
    state = request.app.state
    settings: Settings = state.settings
    now = dt.datetime.now(dt.UTC)
    checks = await _store(db)
    if checks[0]["status"] == "ok":
        checks.append(await _secret_key(db, settings, state.vault))
        checks.extend(
            await _nodes(
                db, url=settings.public_url(), interval_s=settings.node_heartbeat_s, now=now
            )
        )
    checks.append(_directory(settings.home))
    checks.append(_listen(db))
    return {"version": __version__, "serverTime": timestamps.iso(now), "checks": checks}


async def _store(db: Database) -> list[Check]:
    backend = "postgres" if db.dialect == "postgresql" else db.dialect
    try:
        await db.ping()
        current, head = await db.revisions()
    except Exception as exc:  # any store failure is the finding itself
        return [
            _check(
                "store",
                "fail",
                f"{backend} does not answer ({type(exc).__name__})",
                "check that the database is up and ARMILLARY_DATABASE_URL points at it; "
                "the server's log has the full error",
            )
        ]
    store = _check("store", "ok", f"{backend} answers")
    if current == head:
        return [store, _check("migrations", "ok", f"schema at head ({head})")]
    migrations = _check(
        "migrations",
        "fail",
        f"schema at {current}, this server's newest migration is {head}",
        "restart `armillary server` so it migrates; if the schema is newer, a newer server "
        "wrote it: upgrade this one",
    )
    return [store, migrations]


async def _secret_key(db: Database, settings: Settings, vault: vaults.Vault) -> Check:
    if settings.secret_key:
        source = "ARMILLARY_SECRET_KEY"
    else:
        source = f"the dev key file {settings.home / keys.KEY_FILE}"
    async with db.read() as conn:
        token = await sealed.check(conn, vaults.PURPOSE)
    if token is None:
        return _check(
            "secret key", "ok", f"from {source}; no Secret stored yet, so nothing to check"
        )
    which = vault.key_of(token)
    if which == 0:
        return _check("secret key", "ok", f"from {source}; opens the store's key check")
    if which is not None:
        return _check(
            "secret key",
            "warn",
            f"from {source}; the store's key check was written with a previous key",
            "restart the server: it re-encrypts every Secret with the current key at start",
        )
    return _check(
        "secret key",
        "fail",
        f"from {source}; it does not open the store's key check: another server with "
        "another key wrote Secrets to this store",
        "run every server on this store with the same ARMILLARY_SECRET_KEY "
        "(see docs/security.md, The secret key)",
    )


async def _nodes(db: Database, *, url: str, interval_s: float, now: dt.datetime) -> list[Check]:
    async with db.read() as conn:
        found = await nodes.list_all(conn)
    connected = [n for n in found if n.connected]
    checks: list[Check] = []
    if not connected:
        checks.append(
            _check(
                "nodes",
                "warn",
                "no node is connected: nothing can run",
                f"start one: armillary node --server {url} --token-file FILE",
            )
        )
    stale_s = STALE_HEARTBEATS * interval_s
    for node in found:
        checks.append(_node(node, stale_s=stale_s, now=now))
    if connected:
        checks.append(_skew(connected))
    return checks


def _skew(connected: list[nodes.Node]) -> Check:
    """How far each connected node's clock is from the server's, by its last heartbeat
    (the server's clock at arrival minus the node's at sending: one-way latency
    included, milliseconds on a network that works)."""
    skews = {
        n.name: float(n.usage["clock_skew_s"])
        for n in connected
        if isinstance(n.usage.get("clock_skew_s"), int | float)
    }
    unknown = len(connected) - len(skews)
    off = {name: skew for name, skew in skews.items() if abs(skew) > MAX_CLOCK_SKEW_S}
    if off:
        listed = ", ".join(f"{name} {skew:+.1f}s" for name, skew in sorted(off.items()))
        return _check(
            "clock skew",
            "warn",
            f"{len(off)} node clock(s) more than {MAX_CLOCK_SKEW_S:g}s from the server's: {listed}",
            "run NTP on every machine (timedatectl status; chrony or systemd-timesyncd): "
            "heartbeat ages, log times and schedules compare these clocks",
        )
    if not skews:
        return _check(
            "clock skew",
            "n/a",
            f"unknown for {unknown} node(s): no heartbeat with the node's clock yet",
        )
    worst = max(abs(skew) for skew in skews.values())
    more = f"; unknown for {unknown} (no heartbeat with its clock yet)" if unknown else ""
    return _check(
        "clock skew",
        "ok",
        f"{len(skews)} node(s) within {worst:.3f}s of the server's clock{more}",
    )


def _node(node: nodes.Node, *, stale_s: float, now: dt.datetime) -> Check:
    name = f"node/{node.name}"
    age_s = _age_s(node.heartbeat_at, now=now)
    last = "never" if age_s is None else f"{age_s:.0f}s ago"
    if not node.connected:
        return _check(
            name,
            "warn",
            f"not connected (last heartbeat {last})",
            f"start `armillary node --name {node.name}` on its machine again; its replicas "
            "are placed elsewhere meanwhile",
        )
    if age_s is None or age_s > stale_s:
        return _check(
            name,
            "warn",
            f"connected, but its last heartbeat was {last} (expected every "
            f"{stale_s / STALE_HEARTBEATS:g}s)",
            "look at the node daemon's log and the machine's load; restart the daemon if it hangs",
        )
    if node.drain is not None:
        doing = "its replicas are being moved away" if node.drain == "draining" else "empty"
        return _check(
            name,
            "warn",
            f"connected, heartbeat {last}, {node.drain}: {doing}; no new replica is placed on it",
            f"when it is back in service: armillary nodes uncordon {node.name}",
        )
    if not node.schedulable:
        return _check(
            name,
            "warn",
            f"connected, heartbeat {last}, cordoned: no new replica is placed on it",
            f"when it is ready again: armillary nodes uncordon {node.name}",
        )
    return _check(name, "ok", f"connected, heartbeat {last}")


def _age_s(at: dt.datetime | None, *, now: dt.datetime) -> float | None:
    if at is None:
        return None
    return max(0.0, (now - timestamps.utc(at)).total_seconds())


def _directory(home: Path) -> Check:
    """Whether the server can write its home (context file, dev key, SQLite store):
    by writing a file there, since permission bits alone do not tell (a read-only
    mount, a full disk)."""
    name = "home directory"
    try:
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
            pass
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        return _check(
            name,
            "fail",
            f"{home} is not writable ({reason})",
            "give the server's user write access to it, or point ARMILLARY_HOME elsewhere",
        )
    return _check(name, "ok", f"{home} is writable")


def _listen(db: Database) -> Check:
    if db.dialect != "postgresql":
        return _check("postgres listen", "n/a", "the store is SQLite")
    return _check(
        "postgres listen",
        "n/a",
        "not used: one server replica announces changes in process; nothing to check",
    )
