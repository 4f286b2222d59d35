"""References between documents that the store must be able to resolve.

A Stack component or a Tenant override that names `release: agent@1.2.0` points at
the Release `agent-1.2.0`. `apply` and `plan` refuse a set in which such a pin names
a release that neither the store nor the same set holds, so a typo in a version is
an error at apply time, not a tenant stuck later. Likewise a Tenant's `secrets` must
name Secrets that exist and that it may use: its own, or those with no tenant.
And a Tenant's `overrides` (and the `components` its Secrets go to) must name
components its Stack has, so `overrides: {agnet: …}` is refused with a "did you
mean" rather than ignored. Pure: the caller passes the names it knows.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence

from armillary.errors import Issue
from armillary.resources.canonical import Canonical
from armillary.resources.release import release_name


def release_pins(item: Canonical) -> Iterator[tuple[str, str]]:
    """(field path, `component@version`) of every release a Stack or Tenant pins."""
    if item.kind == "Stack":
        for i, component in enumerate(item.spec.get("components", [])):
            if component.get("release"):
                yield f"spec.components[{i}].release", str(component["release"])
    elif item.kind == "Tenant":
        for name, override in item.spec.get("overrides", {}).items():
            if override.get("release"):
                yield f"spec.overrides.{name}.release", str(override["release"])


def release_of(reference: str) -> str:
    """`agent@1.2.0` → the Release name `agent-1.2.0`."""
    component, _, version = reference.partition("@")
    return release_name(component, version)


def missing_releases(items: Sequence[Canonical], *, stored: set[str]) -> list[Issue]:
    """One issue per pin (in document order) to a release neither stored nor in `items`."""
    known = stored | {i.name for i in items if i.kind == "Release"}
    issues: list[Issue] = []
    for index, item in enumerate(items):
        for path, reference in release_pins(item):
            if release_of(reference) not in known:
                issues.append(
                    Issue(
                        path=path,
                        message=(
                            f"release {reference} does not exist; record it first "
                            "(`armillary release record` or `armillary release import`)"
                        ),
                        document=index,
                    )
                )
    return issues


def secret_uses(item: Canonical) -> Iterator[tuple[str, str]]:
    """(field path, Secret name) of every Secret a Tenant uses."""
    if item.kind == "Tenant":
        for i, use in enumerate(item.spec.get("secrets", [])):
            yield f"spec.secrets[{i}].name", str(use["name"])


def unusable_secrets(items: Sequence[Canonical], *, stored: Mapping[str, object]) -> list[Issue]:
    """One issue per use of a Secret that is neither stored nor in `items`, or that
    belongs to another tenant. `stored` maps each stored Secret to its `spec.tenant`."""
    owners = {**stored, **{i.name: i.spec.get("tenant") for i in items if i.kind == "Secret"}}
    issues: list[Issue] = []
    for index, item in enumerate(items):
        for path, name in secret_uses(item):
            message = None
            if name not in owners:
                message = f"secret {name!r} does not exist; an admin applies it first"
            elif owners[name] not in (None, item.name):
                message = (
                    f"secret {name!r} belongs to tenant {owners[name]!r}; a tenant may use "
                    "its own Secrets and those with no spec.tenant"
                )
            if message is not None:
                issues.append(Issue(path=path, message=message, document=index))
    return issues


def component_uses(item: Canonical) -> Iterator[tuple[str, str]]:
    """(field path, component name) of every component of its Stack a Tenant names."""
    if item.kind == "Tenant":
        for name in item.spec.get("overrides", {}):
            yield f"spec.overrides.{name}", str(name)
        for i, use in enumerate(item.spec.get("secrets", [])):
            for j, component in enumerate(use.get("components", [])):
                yield f"spec.secrets[{i}].components[{j}]", str(component)


def stack_of(item: Canonical) -> str | None:
    """The Stack a Tenant runs on; None for every other kind."""
    return str(item.spec["stack"]) if item.kind == "Tenant" else None


def unknown_components(
    items: Sequence[Canonical], *, stored: Mapping[str, Sequence[str]]
) -> list[Issue]:
    """One issue per component a Tenant names that its Stack does not have. `stored`
    maps each stored Stack to its component names; a Stack in `items` wins over the
    stored one. A Tenant whose Stack is known nowhere is left alone: its status says
    so, and the Stack may be applied next."""
    stacks = {
        **stored,
        **{
            i.name: [str(c["name"]) for c in i.spec.get("components", [])]
            for i in items
            if i.kind == "Stack"
        },
    }
    issues: list[Issue] = []
    for index, item in enumerate(items):
        stack = stack_of(item)
        if stack is None or stack not in stacks:
            continue
        names = stacks[stack]
        for path, component in component_uses(item):
            if component in names:
                continue
            message = f"stack {stack!r} has no component {component!r}"
            close = difflib.get_close_matches(component, names, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
            else:
                message += f" (it has: {', '.join(names) or 'none'})"
            issues.append(Issue(path=path, message=message, document=index))
    return issues


USED_BY_TENANTS = {"Org": "org", "Stack": "stack"}
"""The kinds a Tenant points at by name, and the field of its spec that names them:
deleting one of these while a tenant uses it would leave that tenant broken."""


def users(kind: str, name: str, tenants: Sequence[Canonical]) -> list[str]:
    """The names (sorted) of the `tenants` that use the `kind` resource `name`."""
    field = USED_BY_TENANTS.get(kind)
    if field is None:
        return []
    return sorted(t.name for t in tenants if t.spec.get(field) == name)


def still_used(
    deletes: Sequence[tuple[str, str]], tenants: Sequence[Canonical]
) -> list[tuple[str, str, list[str]]]:
    """(kind, name, users) of each resource in `deletes` that some of `tenants` (the
    tenants as they will be: stored, updated by the set, less those it deletes) use."""
    blocked = []
    for kind, name in deletes:
        used_by = users(kind, name, tenants)
        if used_by:
            blocked.append((kind, name, used_by))
    return blocked


def in_use(used_by: Sequence[str], *, shown: int = 10) -> str:
    """Who keeps a resource from being deleted: the first `shown` tenants, and how many."""
    names = ", ".join(used_by[:shown])
    more = f" and {len(used_by) - shown} more" if len(used_by) > shown else ""
    return f"used by {len(used_by)} tenant(s): {names}{more}"
