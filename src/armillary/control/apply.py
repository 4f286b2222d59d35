"""Apply a set of documents to the store, all or nothing, and say what happened to each.

Called by `POST /api/v1/apply`, `PUT /api/v1/{kind}/{name}` and `POST /api/v1/plan`
(with `dry_run`). Every document is validated before anything is written; the writes
then happen in one transaction, so a bad document, a stale resourceVersion or a
conflicting writer leaves the store exactly as it was.

A Secret is sealed as it is parsed (`auth.secrets.seal`): from then on its canonical
form holds keyed digests in place of values, so plan compares digests and the store
never sees a value; the token of its values is written next to its resource.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from armillary import errors
from armillary.auth import secrets
from armillary.control import plan, references
from armillary.errors import Invalid, Issue
from armillary.resources import canonical, validate
from armillary.resources.secret import Secret
from armillary.store import repository
from armillary.store.database import Database, Tx

Result = Literal["created", "configured", "unchanged", "deleted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """What happened to one resource, and the resource as it now is (or last was)."""

    result: Result
    stored: repository.Stored
    generation_before: int | None = None  # None when it was created


@dataclass(frozen=True, slots=True, kw_only=True)
class Parsed:
    desired: canonical.Canonical
    expected_version: int | None
    sealed: str | None = field(default=None, repr=False)  # a Secret's values, encrypted


def parse_documents(
    documents: Sequence[Any], *, vault: secrets.Vault | None = None
) -> list[Parsed]:
    """Validate every document; raise one `Invalid` listing every problem of every one.
    Secrets are sealed with `vault`; without one, a Secret is refused."""
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
        if isinstance(resource, Secret):
            if vault is None:
                message = "a Secret cannot be applied through this request"
                failures.append(Invalid([Issue(path="kind", message=message, document=i)]))
                continue
            desired, sealed = secrets.seal(vault, resource)
            parsed.append(Parsed(desired=desired, expected_version=expected, sealed=sealed))
            continue
        parsed.append(Parsed(desired=canonical.of(resource), expected_version=expected))
    if failures:
        raise errors.combine(failures)
    plan.check_unique([p.desired for p in parsed])
    return parsed


async def compute_plan(db: Database, parsed: Sequence[Parsed], *, prune: bool) -> list[plan.Change]:
    """What `apply` would do, read from the store; nothing is written. A stale
    resourceVersion is reported here exactly as `apply` would report it."""
    async with db.read() as conn:
        await _check_references(conn, parsed)
        current = await _current(conn, parsed, prune=prune)
        changes = _plan(parsed, current, prune=prune)
        await _check_pruned(conn, parsed, changes)
    return changes


async def apply(
    db: Database,
    parsed: Sequence[Parsed],
    *,
    prune: bool,
    now: dt.datetime,
    vault: secrets.Vault | None = None,
) -> list[Applied]:
    """Write every document (and, with `prune`, delete what the set no longer names).
    `vault` is the one the Secrets among `parsed` were sealed with."""
    applied: list[Applied] = []
    async with db.write() as conn:
        await _check_references(conn, parsed)
        current = await _current(conn, parsed, prune=prune)
        by_key = {(p.desired.kind, p.desired.name): p for p in parsed}
        changes = _plan(parsed, current, prune=prune)
        await _check_pruned(conn, parsed, changes)
        for change in changes:
            if change.action == "delete":
                gone = await repository.remove(conn, change.kind, change.name)
                applied.append(
                    Applied(result="deleted", stored=gone, generation_before=gone.generation)
                )
                continue
            item = by_key[(change.kind, change.name)]
            outcome, stored = await repository.apply(
                conn, item.desired, expected_version=item.expected_version, now=now
            )
            if item.sealed is not None and outcome != "unchanged":
                assert vault is not None, "a sealed Secret comes with the vault that sealed it"
                await secrets.write(conn, vault, uid=stored.uid, ciphertext=item.sealed, now=now)
            before = current.get((change.kind, change.name))
            applied.append(
                Applied(
                    result=outcome,
                    stored=stored,
                    generation_before=before.generation if before is not None else None,
                )
            )
    return applied


async def _check_references(conn: Tx, parsed: Sequence[Parsed]) -> None:
    items = [p.desired for p in parsed]
    issues: list[Issue] = []
    if any(True for item in items for _ in references.release_pins(item)):
        stored = {r.name for r in await repository.list_kind(conn, "Release")}
        issues += references.missing_releases(items, stored=stored)
    if any(True for item in items for _ in references.secret_uses(item)):
        owners = {s.name: s.spec.get("tenant") for s in await repository.list_kind(conn, "Secret")}
        issues += references.unusable_secrets(items, stored=owners)
    wanted = {stack for item in items if (stack := references.stack_of(item)) is not None}
    if any(True for item in items for _ in references.component_uses(item)):
        components: dict[str, list[str]] = {}
        for name in sorted(wanted):
            found = await repository.get(conn, "Stack", name)
            if found is not None:
                components[name] = [str(c["name"]) for c in found.spec.get("components", [])]
        issues += references.unknown_components(items, stored=components)
    if issues:
        raise Invalid(issues)


async def _check_pruned(conn: Tx, parsed: Sequence[Parsed], changes: Sequence[plan.Change]) -> None:
    """Refuse (409) a prune that would delete an Org or a Stack tenants still use
    after the set is applied, as `DELETE` does: the tenants would be left broken."""
    doomed = [
        (c.kind, c.name)
        for c in changes
        if c.action == "delete" and c.kind in references.USED_BY_TENANTS
    ]
    if not doomed:
        return
    deleted = {c.name for c in changes if c.action == "delete" and c.kind == "Tenant"}
    tenants = {t.name: t.canonical() for t in await repository.list_kind(conn, "Tenant")}
    tenants.update({p.desired.name: p.desired for p in parsed if p.desired.kind == "Tenant"})
    remaining = [t for name, t in tenants.items() if name not in deleted]
    for kind, name, used_by in references.still_used(doomed, remaining)[:1]:
        raise errors.Conflict(
            f"prune would delete {kind.lower()}/{name}, which is "
            f"{references.in_use(used_by)}; keep it in the set, or delete or move "
            "those tenants first (or in the same set)"
        )


def _plan(
    parsed: Sequence[Parsed], current: dict[tuple[str, str], repository.Stored], *, prune: bool
) -> list[plan.Change]:
    for p in parsed:
        key = (p.desired.kind, p.desired.name)
        repository.check_version(current.get(key), *key, expected=p.expected_version)
    stored = {key: s.canonical() for key, s in current.items()}
    return plan.compute([p.desired for p in parsed], stored, prune=prune)


async def _current(
    conn: Tx, parsed: Sequence[Parsed], *, prune: bool
) -> dict[tuple[str, str], repository.Stored]:
    current: dict[tuple[str, str], repository.Stored] = {}
    if prune:
        for kind in sorted({p.desired.kind for p in parsed}):
            for each in await repository.list_kind(conn, kind):
                current[(kind, each.name)] = each
    else:
        for p in parsed:
            found = await repository.get(conn, p.desired.kind, p.desired.name)
            if found is not None:
                current[(found.kind, found.name)] = found
    return current
