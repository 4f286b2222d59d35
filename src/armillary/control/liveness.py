"""Which silent nodes are lost: the node-loss controller's decision, pure.

`judge(nodes, now=…, lost_after_s=…, watching_since=…)` takes every node not yet
declared lost with its last heartbeat (as the server received it, by the server's
clock) and returns those silent for longer than `lost_after_s`. Silence is counted
from the later of the last heartbeat and `watching_since`, the moment the caller
started watching (or last resumed after a gap, `watching_from`): a server that was
down, or whose loop stalled, has not been hearing heartbeats, and a node must get a
whole window of being heard before it is judged.

When every node would be lost at once (two or more), none is: the likelier fault is
on the server's side — its network, its clock, its store — and replacing every
replica of the fleet onto no node at all would only restart everything once the
heartbeats are heard again (Kubernetes' node lifecycle controller stops evicting in
such a "full disruption" for the same reason).
No clock, no I/O: the caller passes the time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Heard:
    """A node not declared lost: when the server last heard it (None: never)."""

    name: str
    heartbeat_at: dt.datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    lost: tuple[str, ...] = ()  # by name
    held_back: tuple[str, ...] = ()  # silent too long, but all at once: not declared


def judge(
    nodes: Sequence[Heard],
    *,
    now: dt.datetime,
    lost_after_s: float,
    watching_since: dt.datetime,
) -> Verdict:
    """The nodes silent for more than `lost_after_s`, counting from no earlier than
    `watching_since` (all times aware, UTC)."""
    silent = tuple(
        sorted(n.name for n in nodes if silent_s(n, now=now, since=watching_since) > lost_after_s)
    )
    if len(silent) >= 2 and len(silent) == len(nodes):
        return Verdict(held_back=silent)
    return Verdict(lost=silent)


def silent_s(node: Heard, *, now: dt.datetime, since: dt.datetime) -> float:
    """Seconds `node` has been silent, as far as a watcher since `since` can tell."""
    heard = since if node.heartbeat_at is None else max(node.heartbeat_at, since)
    return (now - heard).total_seconds()


def watching_from(
    watching_since: dt.datetime,
    *,
    previous_check: dt.datetime | None,
    now: dt.datetime,
    lost_after_s: float,
) -> dt.datetime:
    """When the watch counts from after a check at `now`: the same as before (which
    may lie ahead: a grace given at start), unless the previous check was more than
    half a window ago (the loop, or the server, was stalled and heartbeats went
    unheard): then from `now` at the earliest."""
    if previous_check is None or (now - previous_check).total_seconds() > lost_after_s / 2:
        return max(now, watching_since)
    return watching_since
