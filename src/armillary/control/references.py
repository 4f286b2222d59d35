"""References between documents that the store must be able to resolve.

A Stack component or a Tenant override that names `release: agent@1.2.0` points at
the Release `agent-1.2.0`. `apply` and `plan` refuse a set in which such a pin names
a release that neither the store nor the same set holds, so a typo in a version is
an error at apply time, not a tenant stuck later. Likewise a Tenant's `secrets` must
name Secrets that exist and that it may use: its own, or those with no tenant.
Pure: the caller passes the names it knows.
"""

from __future__ import annotations

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
