"""`plan.compute` and `plan.diff`: what applying a set of documents would change.

Both are pure, so every case here is a value in, a value out.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from armillary.control import plan
from armillary.errors import Invalid
from armillary.resources import kinds
from armillary.resources.canonical import Canonical


def item(
    kind: str,
    name: str,
    spec: dict[str, Any] | None = None,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Canonical:
    return Canonical(
        kind=kind, name=name, spec=spec or {}, labels=labels or {}, annotations=annotations or {}
    )


def web(*components: dict[str, Any]) -> Canonical:
    """The Stack `web` with the given components, in canonical form (defaults left out)."""
    return item("Stack", "web", {"components": list(components)})


AGENT = {"name": "agent", "command": ["python", "-m", "agent"]}
WORKER = {"name": "worker", "command": ["python", "-m", "worker"]}


def by_key(*items: Canonical) -> dict[tuple[str, str], Canonical]:
    return {(i.kind, i.name): i for i in items}


def summary(changes: list[plan.Change]) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.name) for c in changes]


# --- actions ------------------------------------------------------------------------------


def test_absent_resource_is_created() -> None:
    [change] = plan.compute([web(AGENT)], {})

    assert change == plan.Change(action="create", kind="Stack", name="web")


def test_identical_resource_is_unchanged() -> None:
    [change] = plan.compute([web(AGENT)], by_key(web(AGENT)))

    assert (change.action, change.fields) == ("unchanged", ())


def test_changed_field_of_a_component_is_named_by_the_component() -> None:
    stored = web(AGENT, WORKER)
    desired = web({**AGENT, "replicas": 3}, WORKER)

    [change] = plan.compute([desired], by_key(stored))

    assert change.action == "update"
    assert change.spec_changed
    # the stored spec leaves replicas out (its default, 1); the plan spells it out
    assert change.fields == (
        plan.FieldChange(path="spec.components[name=agent].replicas", before=1, after=3),
    )


def test_inserting_a_component_shows_only_that_component() -> None:
    [change] = plan.compute([web(WORKER, AGENT)], by_key(web(AGENT)))

    [field] = change.fields
    assert (field.path, field.added, field.removed) == ("spec.components[name=worker]", True, False)
    assert field.after["command"] == ["python", "-m", "worker"]


def test_removing_a_component_shows_it_removed() -> None:
    [change] = plan.compute([web(AGENT)], by_key(web(AGENT, WORKER)))

    [field] = change.fields
    assert (field.path, field.added, field.removed) == ("spec.components[name=worker]", False, True)


def test_label_and_annotation_changes_are_not_spec_changes() -> None:
    stored = item("Org", "acme", labels={"team": "a"}, annotations={"example.com/owner": "x"})
    desired = item("Org", "acme", labels={"team": "b"}, annotations={"example.com/owner": "y"})

    [change] = plan.compute([desired], by_key(stored))

    assert change.action == "update"
    assert not change.spec_changed
    assert [(f.path, f.before, f.after) for f in change.fields] == [
        ("metadata.labels.team", "a", "b"),
        ('metadata.annotations["example.com/owner"]', "x", "y"),
    ]


def test_reordering_components_is_a_change() -> None:
    [change] = plan.compute([web(WORKER, AGENT)], by_key(web(AGENT, WORKER)))

    assert change.action == "update"


# --- prune --------------------------------------------------------------------------------


def test_without_prune_nothing_is_deleted() -> None:
    current = by_key(web(AGENT), item("Stack", "old"))

    changes = plan.compute([web(AGENT)], current)

    assert summary(changes) == [("unchanged", "Stack", "web")]


def test_prune_deletes_only_kinds_present_in_the_desired_set() -> None:
    current = by_key(
        item("Org", "acme"),
        web(AGENT),
        item("Stack", "old"),
        item("Tenant", "gone"),  # no Tenant is in the set: out of scope
        item("Schedule", "nightly"),
    )

    changes = plan.compute([item("Org", "acme"), web(AGENT)], current, prune=True)

    assert summary(changes) == [
        ("unchanged", "Org", "acme"),
        ("unchanged", "Stack", "web"),
        ("delete", "Stack", "old"),
    ]


# --- duplicates and ordering --------------------------------------------------------------


def test_duplicate_documents_are_invalid() -> None:
    desired = [web(AGENT), item("Org", "acme"), web(WORKER)]

    with pytest.raises(Invalid) as caught:
        plan.compute(desired, {})

    [issue] = caught.value.issues
    assert (issue.document, issue.path) == (2, "metadata.name")
    assert issue.message == "Stack 'web' appears twice (also document[0])"


def test_same_name_in_two_kinds_is_not_a_duplicate() -> None:
    changes = plan.compute([item("Org", "acme"), item("Tenant", "acme")], {})

    assert summary(changes) == [("create", "Org", "acme"), ("create", "Tenant", "acme")]


def test_referenced_kinds_come_first_and_deletes_last() -> None:
    desired = [
        item("Tenant", "t2"),
        item("WebhookSource", "hooks"),
        item("Tenant", "t1"),
        item("Schedule", "nightly"),
        item("Stack", "web"),
        item("Release", "agent-1"),
        item("Org", "acme"),
    ]
    current = by_key(item("Org", "old-org"), item("Stack", "old-stack"), item("Tenant", "t0"))

    changes = plan.compute(desired, current, prune=True)

    assert summary(changes) == [
        ("create", "Org", "acme"),
        ("create", "Stack", "web"),
        ("create", "Release", "agent-1"),
        ("create", "Tenant", "t1"),
        ("create", "Tenant", "t2"),
        ("create", "Schedule", "nightly"),
        ("create", "WebhookSource", "hooks"),
        # what refers to others goes first, so nothing is left pointing at a deleted thing
        ("delete", "Tenant", "t0"),
        ("delete", "Stack", "old-stack"),
        ("delete", "Org", "old-org"),
    ]


# --- diff -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"a": 1}, {"a": 2}, [("spec.a", 1, 2, False, False)]),
        ({}, {"a": 1}, [("spec.a", None, 1, True, False)]),
        ({"a": 1}, {}, [("spec.a", 1, None, False, True)]),
        ({"a": None}, {}, [("spec.a", None, None, False, True)]),
        ({"a": {"b": [1]}}, {"a": {"b": [2]}}, [("spec.a.b", [1], [2], False, False)]),
        ({"x.y": 1}, {"x.y": 2}, [('spec["x.y"]', 1, 2, False, False)]),
        ({"log_level": 1}, {"log_level": 2}, [("spec.log_level", 1, 2, False, False)]),
        ([1, 2], [2, 1], [("spec", [1, 2], [2, 1], False, False)]),
        ({"a": 1}, [1], [("spec", {"a": 1}, [1], False, False)]),
        (
            [{"name": "a", "v": 1}, {"name": "b", "v": 1}],
            [{"name": "a", "v": 1}, {"name": "b", "v": 2}],
            [("spec[name=b].v", 1, 2, False, False)],
        ),
        (
            # duplicate names: not matched by name, the list is compared whole
            [{"name": "a"}, {"name": "a"}],
            [{"name": "a"}],
            [("spec", [{"name": "a"}, {"name": "a"}], [{"name": "a"}], False, False)],
        ),
    ],
)
def test_diff_table(before: Any, after: Any, expected: list[tuple[Any, ...]]) -> None:
    changes = list(plan.diff(before, after, path="spec"))

    assert [(c.path, c.before, c.after, c.added, c.removed) for c in changes] == expected


# --- properties -----------------------------------------------------------------------------

# JSON values whose keys are never "name", so lists of mappings are never matched by name
# (that case, where order is lost, is test_reordering_components_is_a_change).
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
)
keys = st.sampled_from(["a", "b", "replicas", "x.y", "k-1", ""])
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300)
@given(json_values)
def test_diff_of_a_value_with_itself_is_empty(value: Any) -> None:
    assert list(plan.diff(value, value, path="spec")) == []


@settings(max_examples=300)
@given(json_values, json_values)
def test_diff_is_empty_exactly_when_the_values_are_equal(before: Any, after: Any) -> None:
    changes = list(plan.diff(before, after, path="spec"))

    assert (changes == []) == (before == after)
    assert all(c.path.startswith("spec") for c in changes)


names = st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True)
canonicals = st.builds(
    Canonical,
    kind=st.sampled_from([k.name for k in kinds.KINDS]),
    name=names,
    spec=st.dictionaries(keys, scalars, max_size=2),
    labels=st.dictionaries(st.sampled_from(["team", "tier"]), st.text(max_size=3), max_size=2),
    annotations=st.dictionaries(st.sampled_from(["note"]), st.text(max_size=3), max_size=1),
)
desired_sets = st.lists(canonicals, max_size=8, unique_by=lambda c: (c.kind, c.name))


@settings(max_examples=100)
@given(desired_sets, st.booleans())
def test_plan_of_a_set_against_itself_has_nothing_to_do(
    desired: list[Canonical], prune: bool
) -> None:
    changes = plan.compute(desired, by_key(*desired), prune=prune)

    assert [c.action for c in changes] == ["unchanged"] * len(desired)
    assert {(c.kind, c.name) for c in changes} == {(d.kind, d.name) for d in desired}


@settings(max_examples=100)
@given(st.data(), desired_sets, desired_sets, st.booleans())
def test_plan_does_not_depend_on_document_order(
    data: st.DataObject, desired: list[Canonical], stored: list[Canonical], prune: bool
) -> None:
    shuffled = data.draw(st.permutations(desired))
    current = by_key(*stored)

    assert plan.compute(shuffled, current, prune=prune) == plan.compute(
        desired, current, prune=prune
    )


@settings(max_examples=100)
@given(desired_sets, desired_sets)
def test_prune_deletes_exactly_the_unnamed_resources_of_the_kinds_in_the_set(
    desired: list[Canonical], stored: list[Canonical]
) -> None:
    changes = plan.compute(desired, by_key(*stored), prune=True)

    deleted = {(c.kind, c.name) for c in changes if c.action == "delete"}
    in_scope = {d.kind for d in desired}
    named = {(d.kind, d.name) for d in desired}
    assert deleted == {(s.kind, s.name) for s in stored if s.kind in in_scope} - named
    # deletes come after everything else
    actions = [c.action for c in changes]
    assert actions == sorted(actions, key=lambda a: a == "delete")


@settings(max_examples=100)
@given(
    st.lists(names, min_size=2, max_size=5, unique=True).flatmap(
        lambda ns: st.tuples(st.just(ns), st.permutations(ns))
    )
)
@example((["agent", "worker"], ["worker", "agent"]))
def test_diff_of_reordered_named_lists_is_not_empty(orders: tuple[list[str], list[str]]) -> None:
    first, second = orders
    before = [{"name": n} for n in first]
    after = [{"name": n} for n in second]

    assert (list(plan.diff(before, after, path="spec")) == []) == (before == after)
