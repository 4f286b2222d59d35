"""tenant_status: a tenant's counts and conditions from one reconcile's observations."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.control import tenant_status
from armillary.runtime.rollout import Observed

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
READY = Observed(desired=2, ready=2, updated=2, total=2)
MISSING = "stack 's' does not exist; apply it (running replicas are kept)"


def build(
    observed: dict[str, Observed] | None = None,
    *,
    idle: bool = True,
    unplaced: dict[str, str] | None = None,
    revisions: tenant_status.Revisions | None = None,
) -> tenant_status.TenantStatus:
    return tenant_status.build(
        generation=3,
        stack_generation=7,
        observed={"web": READY} if observed is None else observed,
        idle=idle,
        unplaced=unplaced or {},
        revisions=revisions or tenant_status.Revisions(),
    )


def truths(status: tenant_status.TenantStatus) -> tuple[Any, ...]:
    return tuple(
        (c.value, c.reason, c.message) for c in (status.ready, status.progressing, status.degraded)
    )


CASES: list[tuple[str, tenant_status.TenantStatus, tuple[Any, ...]]] = [
    (
        "every replica ready",
        build(),
        (
            (True, "AllReplicasReady", "2/2 replicas ready"),
            (False, "Converged", "2/2 replicas updated"),
            (False, "None", "no problems"),
        ),
    ),
    (
        "a step still to take",
        build(idle=False),
        (
            (False, "Progressing", "2/2 replicas ready"),
            (True, "RollingOut", "2/2 replicas updated"),
            (False, "None", "no problems"),
        ),
    ),
    (
        "replicas on the old spec",
        build({"web": Observed(desired=2, ready=2, updated=1, total=3)}),
        (
            (False, "Progressing", "2/2 replicas ready"),
            (True, "RollingOut", "1/2 replicas updated"),
            (False, "None", "no problems"),
        ),
    ),
    (
        "a crash loop",
        build({"web": dataclasses.replace(READY, ready=1, problems=("web-1 crash-loops",))}),
        (
            (False, "Degraded", "web: web-1 crash-loops"),
            (False, "Stalled", "2/2 replicas updated"),
            (True, "ReplicasFailing", "web: web-1 crash-loops"),
        ),
    ),
    (
        "no node takes a replica",
        build(
            {"web": Observed(desired=1)}, idle=False, unplaced={"web": "no node has 4 CPUs free"}
        ),
        (
            (False, "Degraded", "web: no node has 4 CPUs free"),
            (False, "Stalled", "0/1 replicas updated"),
            (True, "ReplicasFailing", "web: no node has 4 CPUs free"),
        ),
    ),
    (
        "waiting for a dependency",
        build({"web": Observed(desired=1, updated=1, total=1, waiting_for=("db",))}),
        (
            (False, "Progressing", "web waits for db"),
            (True, "RollingOut", "web waits for db"),
            (False, "None", "no problems"),
        ),
    ),
    (
        "a job that succeeded",
        build({"seed": Observed(desired=1, updated=1, total=1, job=True, done=True)}),
        (
            (True, "AllReplicasReady", "0/1 replicas ready"),
            (False, "Converged", "1/1 replicas updated"),
            (False, "None", "no problems"),
        ),
    ),
    (
        "a job still running",
        build({"seed": Observed(desired=1, ready=1, updated=1, total=1, job=True)}),
        (
            (False, "Progressing", "1/1 replicas ready"),
            (True, "RollingOut", "1/1 replicas updated"),
            (False, "None", "no problems"),
        ),
    ),
    (
        "a change held by its release's wave",
        build(revisions=tenant_status.Revisions(held=("web: waiting: 1.2 is rolling out",))),
        (
            (True, "AllReplicasReady", "2/2 replicas ready"),
            (False, "RolloutHeld", "web: waiting: 1.2 is rolling out"),
            (False, "None", "no problems"),
        ),
    ),
    (
        "ready on the old revision after a rollback",
        build(revisions=tenant_status.Revisions(problems=("web: rollout revision 2 failed",))),
        (
            (True, "AllReplicasReady", "2/2 replicas ready"),
            (False, "Converged", "2/2 replicas updated"),
            (True, "ReplicasFailing", "web: rollout revision 2 failed"),
        ),
    ),
    (
        "the stack is missing",
        tenant_status.without_stack(generation=3, stack="s"),
        ((False, "StackNotFound", MISSING),) * 2 + ((True, "StackNotFound", MISSING),),
    ),
    (
        "a reconcile failed for good",
        tenant_status.failed(generation=3, reason="the release record is unreadable"),
        ((False, "ReconcileFailed", "the release record is unreadable"),) * 2
        + ((True, "ReconcileFailed", "the release record is unreadable"),),
    ),
]


@pytest.mark.parametrize(("status", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_conditions(status: tenant_status.TenantStatus, expected: tuple[Any, ...]) -> None:
    assert truths(status) == expected


def test_document_counts_each_component_and_the_tenant() -> None:
    status = build(
        {
            "web": Observed(desired=2, ready=3, updated=2, total=3),
            "worker": Observed(desired=1, updated=1, total=1, waiting_for=("web",)),
        },
        unplaced={"worker": "no node matches"},
        revisions=tenant_status.Revisions(summary={"web": {"revision": 2, "state": "complete"}}),
    )
    document = status.document(now=NOW)
    assert document["observedGeneration"] == 3
    assert document["stackGeneration"] == 7
    assert document["replicas"] == {"desired": 3, "ready": 2, "updated": 3}  # capped at desired
    assert document["components"] == {
        "web": {"desired": 2, "ready": 3, "updated": 2},
        "worker": {
            "desired": 1,
            "ready": 0,
            "updated": 1,
            "waitingFor": ["web"],
            "unplaced": "no node matches",
        },
    }
    assert document["rollouts"] == {"web": {"revision": 2, "state": "complete"}}
    assert [c["type"] for c in document["conditions"]] == ["Ready", "Progressing", "Degraded"]
    assert {c["lastTransitionTime"] for c in document["conditions"]} == {"2026-12-01T12:00:00Z"}


def test_the_replicas_no_node_takes_are_named_beside_why() -> None:
    status = tenant_status.build(
        generation=1,
        stack_generation=1,
        observed={"web": Observed(desired=3, ready=1, updated=1, total=1), "db": READY},
        idle=False,
        unplaced={"web": "no node fits: 2 node(s) cordoned"},
        unplaced_replicas={"web": (1, 2), "db": (0,)},  # db: placed, so not named
        revisions=tenant_status.Revisions(),
    )
    components = status.document(now=NOW)["components"]
    assert components["web"]["unplaced"] == "no node fits: 2 node(s) cordoned"
    assert components["web"]["unplacedReplicas"] == [1, 2]
    assert "unplacedReplicas" not in components["db"]


def test_a_missing_stack_shows_no_counts() -> None:
    document = tenant_status.without_stack(generation=4, stack="s").document(now=NOW)
    assert set(document) == {"observedGeneration", "conditions"}


def test_a_status_is_a_frozen_value() -> None:
    status = build()
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.observed_generation = 9  # type: ignore[misc]
    assert build() == status  # same input, same value


observations = st.builds(
    Observed,
    desired=st.integers(0, 3),
    ready=st.integers(0, 4),
    updated=st.integers(0, 4),
    total=st.integers(0, 5),
    waiting_for=st.lists(st.sampled_from(["db", "cache"]), max_size=1).map(tuple),
    problems=st.lists(st.just("crash loop"), max_size=1).map(tuple),
    job=st.booleans(),
    done=st.booleans(),
)


@given(
    observed=st.dictionaries(st.sampled_from(["web", "worker", "seed"]), observations),
    idle=st.booleans(),
    unplaced=st.dictionaries(st.sampled_from(["web", "worker"]), st.just("no node")),
)
def test_ready_and_progressing_never_both_and_degraded_says_why(
    observed: dict[str, Observed], idle: bool, unplaced: dict[str, str]
) -> None:
    status = build(observed, idle=idle, unplaced=unplaced)
    assert not (status.ready.value and status.progressing.value)
    has_problems = any(o.problems or name in unplaced for name, o in observed.items())
    assert status.degraded.value == has_problems
    if status.ready.value:
        assert idle and not unplaced
