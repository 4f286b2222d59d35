"""The change feed's wire form between server replicas: NOTIFY payloads.

On Postgres every write transaction that recorded changes also sends them with
`pg_notify` on `CHANNEL`, in the same transaction, so the other replicas hear of a
write only once it commits (`Database.write`). `encode` turns one transaction's
changes into payloads under Postgres's 8000-byte limit (split into as many as needed;
a change that could not fit even alone becomes a `RESYNC` marker, which makes every
listener re-list everything); `decode` turns one back into the sender's id and its
changes. Pure: no I/O. The listener that receives them is `store.listen`.

A payload is compact JSON: `{"s": sender, "c": [[kind, name, tenant, node, flags,
run], ...]}`, flags a bit set (1: status, 2: report); `{"s": sender, "r": 1}` is the
resync marker.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from armillary.store.feed import RESYNC, Change

CHANNEL = "armillary_feed"
LIMIT_BYTES = 7900
"""Below Postgres's 8000-byte payload limit, with room for the channel's framing."""

_STATUS = 1
_REPORT = 2
_DEFAULTS: list[Any] = [None, None, None, None, 0, None]  # kind, name, tenant, node, flags, run


def _row(change: Change) -> list[Any]:
    flags = (_STATUS if change.status else 0) | (_REPORT if change.report else 0)
    row: list[Any] = [change.kind, change.name, change.tenant, change.node, flags, change.run]
    while row and row[-1] in (None, 0) and len(row) > 2:
        row.pop()  # trailing defaults are left out: most changes are [kind, name]
    return row


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def resync_marker(sender: str) -> str:
    return _dump({"s": sender, "r": 1})


def encode(changes: Sequence[Change], *, sender: str, limit_bytes: int = LIMIT_BYTES) -> list[str]:
    """The payloads that carry `changes` from `sender`, each at most `limit_bytes`
    (UTF-8); in order, so a listener publishes them as they were recorded."""
    if not changes:
        return []
    head = len(_dump({"s": sender, "c": []}).encode())
    payloads: list[str] = []
    chunk: list[str] = []
    size = head
    for change in changes:
        if change.kind == RESYNC:
            return [resync_marker(sender)]
        item = _dump(_row(change))
        cost = len(item.encode()) + (1 if chunk else 0)  # the comma between items
        if head + len(item.encode()) > limit_bytes:
            return [resync_marker(sender)]  # cannot be said in one payload: re-list all
        if size + cost > limit_bytes:
            payloads.append(_join(sender, chunk))
            chunk, size = [], head
            cost = len(item.encode())
        chunk.append(item)
        size += cost
    payloads.append(_join(sender, chunk))
    return payloads


def _join(sender: str, items: list[str]) -> str:
    return '{"s":' + _dump(sender) + ',"c":[' + ",".join(items) + "]}"


def decode(payload: str) -> tuple[str, list[Change]]:
    """The sender and the changes of one payload; a resync marker (or a payload this
    code cannot read, from a newer replica) is one `RESYNC` change."""
    try:
        data = json.loads(payload)
        sender = str(data["s"])
        if data.get("r"):
            return sender, [Change(kind=RESYNC, name="*")]
        return sender, [_change(row) for row in data["c"]]
    except (ValueError, KeyError, TypeError, IndexError):
        return "", [Change(kind=RESYNC, name="*")]


def _change(row: list[Any]) -> Change:
    kind, name, tenant, node, flags, run = [*row, *_DEFAULTS[len(row) :]][:6]
    if not (isinstance(kind, str) and isinstance(name, str)):
        raise TypeError(f"a change needs a kind and a name, got {row!r}")
    flags = int(flags or 0)
    return Change(
        kind=kind,
        name=name,
        tenant=tenant,
        node=node,
        status=bool(flags & _STATUS),
        report=bool(flags & _REPORT),
        run=run,
    )
