"""Kubernetes status on real objects: Deployment, ReplicaSet, Pod and Job JSON as the API
returns it (tests/unit/fixtures/kubernetes, each with its source in SOURCES.md) → the
`Observed` each component must give, and what the rollout judgement and the tenant's
conditions make of it.

The fixtures are the every-field example's tenant (examples/kubernetes): its `agent`
service rolling from agent@1.4.0 to agent@1.5.0, and its `seed` job. The first test
keeps them honest: their labels and spec-hash annotations are what rendering writes.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

import pytest

from armillary.control import tenant_status
from armillary.control.revisions import Revision, judge
from armillary.resources import loader
from armillary.runtime.instance import Template
from armillary.runtime.kubernetes import inputs, status
from armillary.runtime.kubernetes.model import Cluster
from armillary.runtime.kubernetes.render import render
from armillary.runtime.rollout import Observed

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kubernetes"
NOW = dt.datetime(2026, 11, 30, 10, 20, tzinfo=dt.UTC)  # 20 minutes into agent@1.5.0's rollout
NEW_IMAGE = "registry.example.com/support/agent:1.5.0"

Obj = dict[str, Any]


def fixture(name: str) -> Obj:
    data: Obj = json.loads((FIXTURES / name).read_text())
    return data


@functools.cache
def _views() -> tuple[Any, ...]:
    documents = [
        item.resource for item in loader.load_paths([str(ROOT / "examples" / "kubernetes")])
    ]
    views, refusals = inputs.views(documents)
    assert refusals == []
    return tuple(views)


def template(component: str) -> Template:
    (view,) = _views()
    return next(t for t in view.instance.templates if t.component == component)


def old_agent() -> Template:
    return template("agent")  # agent@1.4.0, as the example stack runs it


def new_agent() -> Template:
    return dataclasses.replace(old_agent(), image=NEW_IMAGE, release="agent@1.5.0")


def renamed(pod: Obj, name: str) -> Obj:
    """Another pod of the same ReplicaSet (a copy under another name)."""
    other = copy.deepcopy(pod)
    other["metadata"]["name"] = name
    return other


def test_the_fixtures_carry_the_labels_and_spec_hashes_rendering_writes() -> None:
    rendered = {(o["kind"], o["metadata"]["name"]): o for o in render(_views(), cluster=Cluster())}
    pod_template = rendered["Deployment", "agent"]["spec"]["template"]["metadata"]
    hashes = {old_agent().spec_hash(), new_agent().spec_hash()}
    assert pod_template["annotations"][status.SPEC_HASH] == old_agent().spec_hash()
    for path in sorted(FIXTURES.glob("pod-*.json")):
        pod = fixture(path.name)["metadata"]
        labels = {k: v for k, v in pod["labels"].items() if k != "pod-template-hash"}
        assert labels == pod_template["labels"], path.name
        assert pod["annotations"][status.SPEC_HASH] in hashes, path.name
    job = rendered["Job", "seed-e5d1ee30"]
    for name in ("job-complete.json", "job-failed.json"):
        found = fixture(name)
        assert found["metadata"]["labels"] == job["metadata"]["labels"]
        assert found["metadata"]["annotations"] == job["metadata"]["annotations"]
    for name in ("deployment-complete.json", "deployment-progressing.json"):
        deployment = fixture(name)["metadata"]
        assert deployment["labels"] == rendered["Deployment", "agent"]["metadata"]["labels"]
        assert deployment["annotations"][status.SPEC_HASH] in hashes


NEW_CRASHLOOP = "pod agent-5f6b7d9c88-xk2vq CrashLoopBackOff (last exit: Error, code 1)"
NEW_IMAGE_PULL = f"pod agent-5f6b7d9c88-p7w4n ImagePullBackOff (image {NEW_IMAGE!r})"
UNSCHEDULABLE = (
    "pod agent-5f6b7d9c88-h9t6c Unschedulable (0/3 nodes are available: 3 node(s) didn't "
    "match Pod's node affinity/selector.)"
)
NOT_READY = "pod agent-5f6b7d9c88-r3j8d not ready: its readiness probe fails (ContainersNotReady)"
DEADLINE = (
    'deployment agent ProgressDeadlineExceeded (ReplicaSet "agent-5f6b7d9c88" has timed out '
    "progressing.)"
)
JOB_FAILED = "job seed-e5d1ee30 BackoffLimitExceeded (Job has reached the specified backoff limit)"


@pytest.mark.parametrize(
    ("files", "component", "expected"),
    [
        (["pod-ready.json"], "old", Observed(desired=3, ready=1, updated=1, total=1)),
        # The ReplicaSet is the Deployment's business: its pods are counted, not it.
        (
            ["replicaset.json", "pod-ready.json"],
            "old",
            Observed(desired=3, ready=1, updated=1, total=1),
        ),
        (["deployment-complete.json"], "old", Observed(desired=3)),
        (["deployment-progressing.json"], "new", Observed(desired=3)),
        (
            ["pod-crashloopbackoff.json"],
            "new",
            Observed(
                desired=3, updated=1, total=1, problems=(NEW_CRASHLOOP,), failing=(NEW_CRASHLOOP,)
            ),
        ),
        (
            ["pod-imagepullbackoff.json"],
            "new",
            Observed(
                desired=3, updated=1, total=1, problems=(NEW_IMAGE_PULL,), failing=(NEW_IMAGE_PULL,)
            ),
        ),
        (
            ["pod-unschedulable.json"],
            "new",
            Observed(desired=3, updated=1, total=1, problems=(UNSCHEDULABLE,)),
        ),
        (
            ["pod-running-not-ready.json"],
            "new",
            Observed(desired=3, updated=1, total=1, problems=(NOT_READY,), unhealthy=(NOT_READY,)),
        ),
        (
            ["deployment-progress-deadline-exceeded.json"],
            "new",
            Observed(desired=3, problems=(DEADLINE,), failing=(DEADLINE,)),
        ),
        (
            ["job-complete.json"],
            "seed",
            Observed(desired=1, ready=1, updated=1, total=1, job=True, done=True),
        ),
        (
            ["job-failed.json"],
            "seed",
            Observed(
                desired=1,
                updated=1,
                total=1,
                job=True,
                problems=(JOB_FAILED,),
                failing=(JOB_FAILED,),
            ),
        ),
    ],
)
def test_each_fixture_gives_its_observed(
    files: list[str], component: str, expected: Observed
) -> None:
    chosen = {"old": old_agent(), "new": new_agent()}.get(component) or template(component)
    found = status.observe([chosen], [fixture(f) for f in files], now=NOW)
    assert found == {chosen.component: expected}


def test_a_crash_looping_new_revision_beside_a_complete_old_one_fails_on_its_own_pods_only() -> (
    None
):
    ready = fixture("pod-ready.json")
    objects = [
        fixture("deployment-progressing.json"),
        fixture("replicaset.json"),
        ready,
        renamed(ready, "agent-7c9d8b6f54-9qhtb"),
        renamed(ready, "agent-7c9d8b6f54-wv5lp"),
        fixture("pod-crashloopbackoff.json"),
    ]
    new = new_agent()
    observed = status.observe([new], objects, now=NOW)["agent"]
    assert observed == Observed(
        desired=3,
        ready=0,  # the old pods are ready, but not on the revision's spec
        updated=1,
        total=4,
        problems=(NEW_CRASHLOOP,),
        failing=(NEW_CRASHLOOP,),
    )
    revision = Revision(
        number=2,
        template=new,
        template_hash=new.spec_hash(),
        release="agent@1.5.0",
        state="progressing",
        reason=None,
        started_at=dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC),
    )
    assert judge(revision, observed, can_fail=True, now=NOW) == ("failed", NEW_CRASHLOOP)
    # The old revision, looked at through the same objects, is ready and not failing.
    old = status.observe([old_agent()], objects, now=NOW)["agent"]
    assert (old.ready, old.updated, old.failing) == (3, 3, ())
    assert old.problems == (NEW_CRASHLOOP,)  # problems name every pod of the component


def test_a_release_whose_image_cannot_be_pulled_is_rolled_back_with_the_kubernetes_reason() -> None:
    new = new_agent()
    observed = status.observe([new], [fixture("pod-imagepullbackoff.json")], now=NOW)["agent"]
    revision = Revision(
        number=2,
        template=new,
        template_hash=new.spec_hash(),
        release="agent@1.5.0",
        state="progressing",
        reason=None,
        started_at=NOW - dt.timedelta(seconds=5),  # well within every grace and deadline
    )
    assert judge(revision, observed, can_fail=True, now=NOW) == ("failed", NEW_IMAGE_PULL)
    built = tenant_status.build(
        generation=1,
        stack_generation=1,
        observed={"agent": observed},
        idle=True,
        unplaced={},
        revisions=tenant_status.Revisions(),
    )
    assert (built.degraded.value, built.ready.reason) == (True, "Degraded")
    assert "ImagePullBackOff" in built.degraded.message


def test_crash_loop_back_off_fails_only_after_crash_loop_after_restarts_unless_the_command_cannot_run() -> (
    None
):
    pod = fixture("pod-crashloopbackoff.json")
    container = pod["status"]["containerStatuses"][0]
    container["restartCount"] = 2  # below the agent's crash_loop_after (5)
    observed = status.observe([new_agent()], [pod], now=NOW)["agent"]
    assert (observed.problems, observed.failing) == ((NEW_CRASHLOOP,), ())
    # A command that cannot run at all fails at once, as it does on nodes.
    container["lastState"]["terminated"].update(reason="StartError", exitCode=128)
    observed = status.observe([new_agent()], [pod], now=NOW)["agent"]
    assert observed.failing == (
        "pod agent-5f6b7d9c88-xk2vq CrashLoopBackOff (last exit: StartError, code 128)",
    )


def test_a_missing_secret_fails_the_revision_and_a_refused_pod_is_a_problem() -> None:
    pod = fixture(
        "pod-imagepullbackoff.json"
    )  # the same pod, its image pulled, its Secret not there
    pod["status"]["containerStatuses"][0]["state"] = {
        "waiting": {
            "message": 'secret "support-db" not found',
            "reason": "CreateContainerConfigError",
        }
    }
    text = 'pod agent-5f6b7d9c88-p7w4n CreateContainerConfigError (secret "support-db" not found)'
    assert status.observe([new_agent()], [pod], now=NOW)["agent"].failing == (text,)
    # The Deployment page's example of a quota refusing pods (kubernetes.io, "Failed Deployment").
    refused = fixture("deployment-progressing.json")
    refused["status"]["conditions"].append(
        {
            "lastTransitionTime": "2026-11-30T10:00:01Z",
            "lastUpdateTime": "2026-11-30T10:00:01Z",
            "message": 'Error creating: pods "agent-5f6b7d9c88-" is forbidden: exceeded quota: '
            "tenant-quota, requested: pods=1, used: pods=40, limited: pods=40",
            "reason": "FailedCreate",
            "status": "True",
            "type": "ReplicaFailure",
        }
    )
    observed = status.observe([new_agent()], [refused], now=NOW)["agent"]
    assert observed.failing == ()
    assert observed.problems == (
        'deployment agent FailedCreate (Error creating: pods "agent-5f6b7d9c88-" is forbidden: '
        "exceeded quota: tenant-quota, requested: pods=1, used: pods=40, limited: pods=40)",
    )


def test_a_pod_not_yet_ready_within_its_probes_time_is_not_unhealthy() -> None:
    # agent's probe: 30 s start period + 5 s interval × 4 failures = 50 s; started 10:00:04.
    early = dt.datetime(2026, 11, 30, 10, 0, 40, tzinfo=dt.UTC)
    observed = status.observe([new_agent()], [fixture("pod-running-not-ready.json")], now=early)
    assert observed["agent"] == Observed(desired=3, updated=1, total=1)


def test_a_deployment_status_of_an_older_generation_or_spec_fails_nothing() -> None:
    stale = fixture("deployment-progress-deadline-exceeded.json")
    stale["metadata"]["generation"] = 3  # changed since the controller last looked
    assert status.observe([new_agent()], [stale], now=NOW)["agent"] == Observed(desired=3)
    other = fixture("deployment-progress-deadline-exceeded.json")
    observed = status.observe([old_agent()], [other], now=NOW)["agent"]
    assert (observed.problems, observed.failing) == ((DEADLINE,), ())


def test_pods_that_are_not_the_components_are_not_counted() -> None:
    foreign = fixture("pod-ready.json")
    foreign["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "helm"
    scheduled = fixture("pod-crashloopbackoff.json")
    scheduled["metadata"]["labels"]["app.kubernetes.io/component"] = "schedule"  # a CronJob's
    leaving = fixture("pod-ready.json")
    leaving["metadata"]["deletionTimestamp"] = "2026-11-30T10:19:00Z"
    evicted = fixture("pod-ready.json")
    evicted["status"] = {
        "message": "The node was low on resource: memory.",
        "phase": "Failed",
        "reason": "Evicted",
    }
    objects = [foreign, scheduled, leaving, evicted]
    assert status.observe([old_agent()], objects, now=NOW)["agent"] == Observed(desired=3)


def test_a_job_waits_for_its_dependencies_and_a_template_without_image_is_a_problem() -> None:
    migrate, seed = template("migrate"), template("seed")
    observed = status.observe([migrate, seed], [fixture("job-complete.json")], now=NOW)
    assert observed["seed"].waiting_for == ("migrate",)
    assert observed["migrate"] == Observed(desired=1, job=True)
    process = dataclasses.replace(
        old_agent(), image=None, problem="release agent@1.5.0 is a process artifact"
    )
    assert status.observe([process], [fixture("pod-ready.json")], now=NOW)["agent"] == Observed(
        desired=3, problems=("release agent@1.5.0 is a process artifact",)
    )
    command = dataclasses.replace(
        old_agent(), image=None, release=None, problem=None, command=("agent",)
    )
    assert status.observe([command], [], now=NOW)["agent"].problems == (
        "component 'agent' runs a process; the kubernetes runtime runs container images",
    )


def test_remaining_says_what_is_left_in_a_namespace() -> None:
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "armillary-zxmapmxmn2", "deletionTimestamp": "2026-11-30T10:19:00Z"},
        "status": {"phase": "Terminating"},
    }
    assert status.remaining([fixture("pod-ready.json"), namespace]) == (
        "Namespace/armillary-zxmapmxmn2 (terminating)",
        "Pod/agent-7c9d8b6f54-4m2xz",
    )
    assert status.remaining([]) == ()
