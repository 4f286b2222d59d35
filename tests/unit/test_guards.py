"""The pure parts of issue 15's guards and waits, table-driven: which components a
tenant names that its stack lacks, who uses an Org or a Stack, and where a tenant
stands for `apply --wait`."""

from __future__ import annotations

from typing import Any

import pytest

from armillary.cli import standing
from armillary.control import references
from armillary.errors import Invalid
from armillary.resources.canonical import Canonical


def tenant(name: str, *, stack: str = "s", org: str = "o", **spec: Any) -> Canonical:
    return Canonical(
        kind="Tenant",
        name=name,
        spec={"org": org, "stack": stack, **spec},
        labels={},
        annotations={},
    )


def stack(name: str, *components: str) -> Canonical:
    spec = {"components": [{"name": c} for c in components]}
    return Canonical(kind="Stack", name=name, spec=spec, labels={}, annotations={})


@pytest.mark.parametrize(
    ("items", "stored", "expected"),
    [
        # a typo, with the closest name suggested
        (
            [tenant("t", overrides={"agnet": {}})],
            {"s": ["agent", "worker"]},
            [("spec.overrides.agnet", 0, "did you mean 'agent'?")],
        ),
        # nothing close: the stack's components are listed
        (
            [tenant("t", overrides={"zzz": {}})],
            {"s": ["agent"]},
            [("spec.overrides.zzz", 0, "(it has: agent)")],
        ),
        # a Secret given to a component the stack lacks
        (
            [tenant("t", secrets=[{"name": "x", "components": ["agent", "wroker"]}])],
            {"s": ["agent", "worker"]},
            [("spec.secrets[0].components[1]", 0, "did you mean 'worker'?")],
        ),
        # the stack in the set wins over the stored one
        ([stack("s", "agent"), tenant("t", overrides={"agent": {}})], {"s": ["other"]}, []),
        (
            [stack("s", "other"), tenant("t", overrides={"agent": {}})],
            {"s": ["agent"]},
            [("spec.overrides.agent", 1, "has no component 'agent'")],
        ),
        # a stack known nowhere: left to the tenant's status
        ([tenant("t", overrides={"anything": {}})], {}, []),
        ([tenant("t", overrides={"agent": {"replicas": 2}})], {"s": ["agent"]}, []),
    ],
)
def test_unknown_components(
    items: list[Canonical], stored: dict[str, list[str]], expected: list[tuple[str, int, str]]
) -> None:
    issues = references.unknown_components(items, stored=stored)
    assert [(i.path, i.document) for i in issues] == [(p, d) for p, d, _ in expected]
    for issue, (_, _, words) in zip(issues, expected, strict=True):
        assert words in issue.message


def test_users_of_an_org_or_stack_and_the_refusal_names_ten() -> None:
    tenants = [tenant(f"t{i:02}", stack="s" if i % 2 else "other", org="o") for i in range(24)]
    assert references.users("Stack", "s", tenants) == [f"t{i:02}" for i in range(1, 24, 2)]
    assert len(references.users("Org", "o", tenants)) == 24
    assert references.users("Release", "s", tenants) == []
    message = references.in_use(references.users("Org", "o", tenants))
    assert message.startswith("used by 24 tenant(s): t00, ") and message.endswith("t09 and 14 more")


def test_still_used_counts_the_tenants_as_the_set_leaves_them() -> None:
    moved = tenant("moved", stack="new")
    staying = tenant("staying", stack="old")
    deletes = [("Stack", "old"), ("Stack", "unused"), ("Org", "o")]
    assert references.still_used(deletes, [moved, staying]) == [
        ("Stack", "old", ["staying"]),
        ("Org", "o", ["moved", "staying"]),
    ]
    assert references.still_used([("Stack", "old")], [moved]) == []


def document(*, generation: int = 2, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "t", "generation": generation}, "status": status or {}}


def conditions(ready: str, reason: str, message: str = "m") -> list[dict[str, str]]:
    return [
        {"type": "Ready", "status": ready, "reason": reason, "message": message},
        {"type": "Degraded", "status": "False", "reason": "None", "message": "no problems"},
    ]


@pytest.mark.parametrize(
    ("doc", "stack_generation", "state"),
    [
        (document(status={}), None, "progressing"),
        # Ready, but for the previous generation
        (
            document(status={"observedGeneration": 1, "conditions": conditions("True", "A")}),
            None,
            "progressing",
        ),
        (
            document(status={"observedGeneration": 2, "conditions": conditions("True", "A")}),
            None,
            "ready",
        ),
        # Ready, but not yet for the Stack's new generation
        (
            document(
                status={
                    "observedGeneration": 2,
                    "stackGeneration": 3,
                    "conditions": conditions("True", "A"),
                }
            ),
            4,
            "progressing",
        ),
        (
            document(
                status={"observedGeneration": 2, "conditions": conditions("False", "StackNotFound")}
            ),
            None,
            "failed",
        ),
        (
            document(
                status={
                    "observedGeneration": 2,
                    "conditions": conditions("True", "AllReplicasReady"),
                    "rollouts": {"agent": {"revision": 3, "state": "failed"}},
                }
            ),
            None,
            "failed",
        ),
        (
            document(
                status={"observedGeneration": 2, "conditions": conditions("False", "Progressing")}
            ),
            None,
            "progressing",
        ),
    ],
)
def test_judge(doc: dict[str, Any], stack_generation: int | None, state: str) -> None:
    assert standing.judge(doc, stack_generation=stack_generation).state == state


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0)]
)
def test_duration(text: str, seconds: float) -> None:
    assert standing.duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0", "-5m", "m"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(Invalid):
        standing.duration_s(text)
