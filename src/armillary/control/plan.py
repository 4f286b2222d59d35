"""What applying a set of documents would change: the pure heart of `plan` and `apply`.

`compute(desired, current, prune=…)` compares each desired resource with the stored
one and returns one `Change` per resource: create, update (with the changed fields),
unchanged, or — with `prune` — delete for stored resources of the kinds in the set
that the set no longer names. No I/O, no clock: the same input gives the same plan,
and `compute(x, x)` has nothing to do. A change under a kind's sensitive field (a
Secret's `data`) says which key changed, never what it was or became.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from armillary.errors import Invalid, Issue
from armillary.resources import kinds
from armillary.resources.canonical import Canonical
from armillary.resources.secret import masked

Action = Literal["create", "update", "delete", "unchanged"]
_MISSING: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldChange:
    path: str
    before: Any = None
    after: Any = None
    added: bool = False
    removed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    action: Action
    kind: str
    name: str
    fields: tuple[FieldChange, ...] = ()

    @property
    def spec_changed(self) -> bool:
        return any(f.path.startswith("spec") for f in self.fields)


def check_unique(desired: Sequence[Canonical]) -> None:
    """Two documents naming the same resource make an ambiguous set: refuse it."""
    first: dict[tuple[str, str], int] = {}
    issues = []
    for i, item in enumerate(desired):
        key = (item.kind, item.name)
        if key in first:
            message = f"{item.kind} {item.name!r} appears twice (also document[{first[key]}])"
            issues.append(Issue(path="metadata.name", message=message, document=i))
        first.setdefault(key, i)
    if issues:
        raise Invalid(issues)


def compute(
    desired: Sequence[Canonical],
    current: Mapping[tuple[str, str], Canonical],
    *,
    prune: bool = False,
) -> list[Change]:
    """The plan, ordered as it would be applied (referenced kinds first, deletes last)."""
    check_unique(desired)
    changes = [_one(item, current.get((item.kind, item.name))) for item in desired]
    changes.sort(key=lambda c: (kinds.ORDER.get(c.kind, 99), c.name))
    if prune:
        wanted = {(d.kind, d.name) for d in desired}
        scope = {d.kind for d in desired}
        doomed = [key for key in current if key[0] in scope and key not in wanted]
        doomed.sort(key=lambda k: (-kinds.ORDER.get(k[0], 99), k[1]))
        changes.extend(Change(action="delete", kind=k, name=n) for k, n in doomed)
    return changes


def _one(item: Canonical, stored: Canonical | None) -> Change:
    if stored is None:
        return Change(action="create", kind=item.kind, name=item.name)
    fields = (
        *diff(stored.labels, item.labels, path="metadata.labels"),
        *diff(stored.annotations, item.annotations, path="metadata.annotations"),
        *_spec_diff(item.kind, stored.spec, item.spec),
    )
    action: Action = "update" if fields else "unchanged"
    return Change(action=action, kind=item.kind, name=item.name, fields=tuple(fields))


def _spec_diff(kind: str, before: dict[str, Any], after: dict[str, Any]) -> Iterator[FieldChange]:
    # Canonical specs leave defaults out; compare them with defaults spelled out, so
    # `replicas: 1 → 3` reads as such and not as a new field.
    if before == after:
        return iter(())
    known = kinds.BY_NAME.get(kind)
    if known is None:
        return diff(before, after, path="spec")
    changes = diff(known.expand(before), known.expand(after), path="spec")
    return (_hidden(c) if known.hides(c.path) else c for c in changes)


def _hidden(change: FieldChange) -> FieldChange:
    return FieldChange(
        path=change.path,
        before=None if change.added else masked(change.before),
        after=None if change.removed else masked(change.after),
        added=change.added,
        removed=change.removed,
    )


def diff(before: Any, after: Any, *, path: str) -> Iterator[FieldChange]:
    """Field-level differences. Lists of named items are matched by name, so moving or
    inserting a component shows as that component, not as every index after it."""
    if before == after:
        return
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in _ordered_keys(before, after):
            sub = _join(path, key)
            yield from _pair(before.get(key, _MISSING), after.get(key, _MISSING), sub)
    elif _named_list(before) and _named_list(after):
        old = {i["name"]: i for i in before}
        new = {i["name"]: i for i in after}
        for name in _ordered_keys(old, new):
            yield from _pair(
                old.get(name, _MISSING), new.get(name, _MISSING), f"{path}[name={name}]"
            )
        kept_before = [n for n in old if n in new]
        kept_after = [n for n in new if n in old]
        if kept_before != kept_after:  # order is part of the spec: say it moved
            yield FieldChange(path=f"{path}[*].name", before=kept_before, after=kept_after)
    else:
        yield FieldChange(path=path, before=before, after=after)


def _pair(before: Any, after: Any, path: str) -> Iterator[FieldChange]:
    if before is _MISSING:
        yield FieldChange(path=path, after=after, added=True)
    elif after is _MISSING:
        yield FieldChange(path=path, before=before, removed=True)
    else:
        yield from diff(before, after, path=path)


def _ordered_keys(before: Iterable[Any], after: Iterable[Any]) -> list[Any]:
    keys = list(before)
    keys.extend(k for k in after if k not in keys)
    return keys


def _named_list(value: Any) -> bool:
    if not isinstance(value, list) or not value:
        return False
    if not all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in value):
        return False
    names = [i["name"] for i in value]
    return len(set(names)) == len(names)


def _join(path: str, key: Any) -> str:
    text = str(key)
    if text.replace("_", "").replace("-", "").isalnum():
        return f"{path}.{text}"
    return f'{path}["{text}"]'
