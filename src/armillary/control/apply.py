"""Apply a set of documents to the store, all or nothing, and say what happened to each.

Called by `POST /api/v1/apply`, `PUT /api/v1/{kind}/{name}` and `POST /api/v1/plan`
(with `dry_run`). Every document is validated before anything is written; the writes
then happen in one transaction, so a bad document, a stale resourceVersion or a
conflicting writer leaves the store exactly as it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from armillary import errors
from armillary.control import plan
from armillary.errors import Invalid, Issue
from armillary.resources import canonical, validate
from armillary.store import repository
from armillary.store.database import Database, Tx

Result = Literal["created", "configured", "unchanged", "deleted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    kind: str
    name: str
    result: Result
    generation: int
    resource_version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Parsed:
    desired: canonical.Canonical
    expected_version: int | None


def parse_documents(documents: Sequence[Any]) -> list[Parsed]:
    """Validate every document; raise one `Invalid` listing every problem of every one."""
    parsed: list[Parsed] = []
    failures: list[Invalid] = []
    for i, raw in enumerate(documents):
        try:
            resource = validate.parse(raw, document=i)
        except Invalid as exc:
            failures.append(exc)
            continue
        expected: int | None = None
        version = resource.metadata.resource_version
        if version is not None:
            if not version.isdigit():
                message = f"expected the resourceVersion the server returned, got {version!r}"
                failures.append(
                    Invalid([Issue(path="metadata.resourceVersion", message=message, document=i)])
                )
                continue
            expected = int(version)
        parsed.append(Parsed(desired=canonical.of(resource), expected_version=expected))
    if failures:
        raise errors.combine(failures)
    plan.check_unique([p.desired for p in parsed])
    return parsed


async def compute_plan(db: Database, parsed: Sequence[Parsed], *, prune: bool) -> list[plan.Change]:
    """What `apply` would do, read from the store; nothing is written."""
    async with db.read() as conn:
        current = await _current(conn, parsed, prune=prune)
    return plan.compute([p.desired for p in parsed], current, prune=prune)


async def apply(
    db: Database, parsed: Sequence[Parsed], *, prune: bool, now: dt.datetime
) -> list[Applied]:
    """Write every document (and, with `prune`, delete what the set no longer names)."""
    applied: list[Applied] = []
    async with db.write() as conn:
        current = await _current(conn, parsed, prune=prune)
        changes = plan.compute([p.desired for p in parsed], current, prune=prune)
        expected = {(p.desired.kind, p.desired.name): p.expected_version for p in parsed}
        by_key = {(p.desired.kind, p.desired.name): p.desired for p in parsed}
        for change in changes:
            key = (change.kind, change.name)
            if change.action == "delete":
                gone = await repository.remove(conn, change.kind, change.name)
                applied.append(_applied(gone, "deleted"))
                continue
            outcome, stored = await repository.apply(
                conn, by_key[key], expected_version=expected[key], now=now
            )
            applied.append(_applied(stored, outcome))
    return applied


def _applied(stored: repository.Stored, result: Result) -> Applied:
    return Applied(
        kind=stored.kind,
        name=stored.name,
        result=result,
        generation=stored.generation,
        resource_version=stored.resource_version,
    )


async def _current(
    conn: Tx, parsed: Sequence[Parsed], *, prune: bool
) -> dict[tuple[str, str], canonical.Canonical]:
    current: dict[tuple[str, str], canonical.Canonical] = {}
    if prune:
        for kind in sorted({p.desired.kind for p in parsed}):
            for each in await repository.list_kind(conn, kind):
                current[(kind, each.name)] = each.canonical()
    else:
        for p in parsed:
            found = await repository.get(conn, p.desired.kind, p.desired.name)
            if found is not None:
                current[(found.kind, found.name)] = found.canonical()
    return current
