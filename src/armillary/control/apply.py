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
from armillary.control import plan, references, runtimes
from armillary.errors import Invalid, Issue
from armillary.resources import canonical, validate
from armillary.resources.cluster import Cluster
from armillary.resources.secret import Secret
from armillary.resources.stack import Stack
from armillary.resources.tenant import Org, Tenant
from armillary.runtime import expand
from armillary.runtime.kubernetes import model, render
from armillary.runtime.kubernetes import runtime as kubernetes
from armillary.store import repository
from armillary.store.database import Database, Tx

Result = Literal["created", "configured", "unchanged", "deleted"]
API = "armillary.dev/v1"


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
    issues += await _check_kubernetes(conn, items)
    if issues:
        raise Invalid(issues)


async def _check_kubernetes(conn: Tx, items: Sequence[canonical.Canonical]) -> list[Issue]:
    """What would not make valid Kubernetes objects, for each Tenant of the set that
    runs on a Cluster (its own `runtime`, else its Org's), at the field that says it.
    A component that runs a process is not refused here: the runtime says so in the
    tenant's status, and the rest of the stack runs."""
    index = {(item.kind, item.name): i for i, item in enumerate(items)}

    async def document(kind: str, name: str) -> dict[str, Any] | None:
        if (kind, name) in index:
            item = items[index[(kind, name)]]
            return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": item.spec}
        row = await repository.get(conn, kind, name)
        return row.document() if row is not None else None

    issues: list[Issue] = []
    for i, item in enumerate(items):
        if item.kind != "Tenant":
            continue
        tenant = Tenant.model_validate(await document("Tenant", item.name))
        org_document = await document("Org", tenant.spec.org)
        org = Org.model_validate(org_document) if org_document is not None else None
        chosen = runtimes.wanted(tenant, org)
        stack_document = await document("Stack", tenant.spec.stack)
        if not chosen.startswith(runtimes.PREFIX) or stack_document is None:
            continue
        cluster = chosen.removeprefix(runtimes.PREFIX)
        cluster_document = await document("Cluster", cluster)
        settings = (
            kubernetes.settings_of(Cluster.model_validate(cluster_document).spec)
            if cluster_document is not None
            else model.Cluster()
        )
        usable = {use.name: "apply" for use in tenant.spec.secrets}
        view = model.TenantView(
            tenant=tenant.metadata.name,
            org=tenant.spec.org,
            stack=tenant.spec.stack,
            instance=expand.expand(tenant, Stack.model_validate(stack_document), {}, usable),
            quota=org.spec.tenant_quota if org is not None else None,
        )
        for refusal in render.refuse(view, cluster=settings):
            if refusal.path.endswith((".command", ".release")):
                continue  # a process: a problem in status, not an invalid object
            message = f"on cluster {cluster!r} (tenant {tenant.metadata.name!r}): {refusal.message}"
            where = index.get((refusal.kind, refusal.name))
            if where is not None:
                issues.append(Issue(path=refusal.path, message=message, document=where))
            else:  # the Stack is stored: said at the Tenant, naming the Stack's field
                issues.append(Issue(path="spec.stack", message=f"{refusal}: {message}", document=i))
    return list(dict.fromkeys(issues))


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
