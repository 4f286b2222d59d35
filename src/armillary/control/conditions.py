"""Reading status conditions (`{"type", "status", "reason", "message"}`) by type."""

from __future__ import annotations

from typing import Any


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
