"""Status conditions (`{"type", "status", "reason", "message", "lastTransitionTime"}`):
making them, reading them by type, and keeping transition times across writes.
Shared by every controller that writes status (tenants, schedules), and by the driver's
`give_up`, which says a reconcile failed for good."""

from __future__ import annotations

import datetime as dt
from typing import Any

from armillary import timestamps


def make(kind: str, value: bool, reason: str, message: str, now: dt.datetime) -> dict[str, str]:
    """One condition, as of `now`."""
    return {
        "type": kind,
        "status": "True" if value else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": timestamps.iso(now),
    }


def keep_transition_times(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """A condition whose status did not change keeps its lastTransitionTime, so a
    status rewritten with the same truths does not look like a change."""
    previous = {c["type"]: c for c in before.get("conditions", [])}
    kept = []
    for condition in after.get("conditions", []):
        old = previous.get(condition["type"])
        if old is not None and old.get("status") == condition["status"]:
            condition = {**condition, "lastTransitionTime": old.get("lastTransitionTime")}
        kept.append(condition)
    return {**after, "conditions": kept}


def failed_for_good(status: dict[str, Any], reason: str, now: dt.datetime) -> dict[str, Any]:
    """`status` once a reconcile failed for good (a `PermanentError`): Ready False and
    Degraded True, reason `ReconcileFailed` and the error's words; the rest is kept."""
    replaced = {
        "Ready": make("Ready", False, "ReconcileFailed", reason, now),
        "Degraded": make("Degraded", True, "ReconcileFailed", reason, now),
    }
    kept = [c for c in status.get("conditions", []) if c.get("type") not in replaced]
    return {**status, "conditions": [*replaced.values(), *kept]}


def find(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in status.get("conditions", []):
        if condition.get("type") == kind:
            return dict(condition)
    return None


def is_true(status: dict[str, Any], kind: str) -> bool:
    found = find(status, kind)
    return found is not None and found.get("status") == "True"


def message(status: dict[str, Any], kind: str) -> str | None:
    found = find(status, kind)
    return None if found is None else str(found.get("message"))
