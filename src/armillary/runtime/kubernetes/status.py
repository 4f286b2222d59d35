"""What a tenant's namespace holds → what each component looks like (`rollout.Observed`).

Pure: the objects are what a watch cache holds for one tenant's namespace —
Deployments, ReplicaSets, Pods and Jobs as the API returns them (plain dicts) — and
`now` only times readiness probes. The kubernetes runtime calls `observe` after every
watch event; its answer drives the same rollout judgement (`control.revisions.judge`),
automatic rollback and Ready/Progressing/Degraded conditions as the nodes runtime's.

"On the current spec" means Armillary's spec hash (`Template.spec_hash()`), not
Kubernetes' generation: the renderer writes it as the annotation `armillary.dev/spec-hash`
on every Deployment and Job and on their pod templates, so every pod carries the
hash of the template it was made from. A pod belongs to a component through its
labels (`app.kubernetes.io/name` = the component, `app.kubernetes.io/component` =
`service` or `job`, `app.kubernetes.io/managed-by` = `armillary`); pods of a
schedule's CronJob are not a component's.

Kubernetes' reasons map as the nodes runtime's states do (docs/kubernetes.md, Status):

- a container that cannot start — its image cannot be pulled (`ErrImagePull`,
  `ImagePullBackOff`, `InvalidImageName`, `ErrImageNeverPull`), its config or
  container cannot be made (`CreateContainerConfigError`, `CreateContainerError`,
  `RunContainerError`), or its command cannot run (`CrashLoopBackOff` after a
  `StartError`) — is failing at once, as a replica whose command cannot start is on
  nodes: a release whose image cannot be pulled is rolled back;
- `CrashLoopBackOff` is failing once the container restarted `crash_loop_after`
  times (the nodes runtime's crash-loop threshold); before that it is a problem;
- a pod the scheduler cannot place (`PodScheduled` False: `Unschedulable`) is a
  problem, not failing — like "no node takes it" on nodes;
- a running pod that is not Ready longer than its readiness probe could take to pass
  (start period + interval × failure threshold) is unhealthy;
- a Deployment whose `Progressing` condition is False (`ProgressDeadlineExceeded`)
  on the current spec is failing; `ReplicaFailure` (e.g. a quota refusing pods) is a
  problem;
- a Job `Complete` on the current spec is done; one `Failed` (`BackoffLimitExceeded`,
  `DeadlineExceeded`, ...) is failing.

Texts name the pod, Job or Deployment and the Kubernetes reason, and leave out what
changes on every retry (restart counts, back-off seconds), so status is not
rewritten on every crash.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from armillary.runtime.instance import Template
from armillary.runtime.kubernetes import tenancy, workloads
from armillary.runtime.rollout import Observed

Obj = Mapping[str, Any]

SPEC_HASH = workloads.SPEC_HASH
"""The annotation holding `Template.spec_hash()` on Deployments, Jobs and their pods."""

# Waiting reasons of a container that will not start however long it waits.
CANNOT_START = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
_IMAGE = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
# Why a container last ended when its command could not be run at all.
_COMMAND_FAILED = frozenset({"StartError", "ContainerCannotRun"})
# Waiting reasons on the way up: not a problem.
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})
_MESSAGE_MAX = 200


def observe(
    templates: Sequence[Template], objects: Sequence[Obj], *, now: dt.datetime
) -> dict[str, Observed]:
    """Each component's replicas as the namespace's `objects` show them, by component
    name, in the templates' order. `now` (aware) decides whether a pod not yet Ready
    has had the time its readiness probe needs.

    Every object needs its `kind`: watch events and `kubectl get -o json` carry it, but
    the items of a LIST answer do not — set it from the list's kind first."""
    index = _Index(objects)
    seen = {t.component: _component(t, index, now) for t in templates}
    by_name = {t.component: t for t in templates}
    return {
        name: replace(observed, waiting_for=_waiting(by_name[name], seen))
        for name, observed in seen.items()
    }


def remaining(objects: Sequence[Obj]) -> tuple[str, ...]:
    """What is still in a tenant's namespace, as `Kind/name` (`(terminating)` when its
    deletion has begun), sorted; empty once everything is gone. The Namespace itself
    counts: a namespace being deleted is not gone until the API drops it."""
    left = []
    for obj in objects:
        metadata = obj.get("metadata") or {}
        name = f"{obj.get('kind', '?')}/{metadata.get('name', '?')}"
        if metadata.get("deletionTimestamp"):
            name += " (terminating)"
        left.append(name)
    return tuple(sorted(left))


class _Index:
    """The namespace's objects Armillary manages, by kind."""

    def __init__(self, objects: Sequence[Obj]) -> None:
        self.by_kind: dict[str, list[Obj]] = {}
        for obj in objects:
            if _labels(obj).get("app.kubernetes.io/managed-by") == tenancy.MANAGED_BY:
                self.by_kind.setdefault(str(obj.get("kind")), []).append(obj)

    def of(self, kind: str, component: str, role: str) -> list[Obj]:
        """Live objects of `kind` made for `component` in `role` (service | job)."""
        return [
            obj
            for obj in self.by_kind.get(kind, ())
            if _labels(obj).get("app.kubernetes.io/name") == component
            and _labels(obj).get("app.kubernetes.io/component") == role
            and not (obj.get("metadata") or {}).get("deletionTimestamp")
        ]


def _component(template: Template, index: _Index, now: dt.datetime) -> Observed:
    is_job = template.type == "job"
    if template.image is None:
        # Nothing to run here: a process (or a release not recorded, or whose artifact is
        # a process). With an image, `problem` is the nodes runtime's and is not ours.
        problem = template.problem or (
            f"component {template.component!r} runs a process; the kubernetes runtime runs "
            "container images"
        )
        return Observed(desired=template.replicas, job=is_job, problems=(problem,))
    spec_hash = template.spec_hash()
    troubles = _Troubles()
    role = "job" if is_job else "service"
    for pod in index.of("Pod", template.component, role):
        if _phase(pod) in ("Succeeded", "Failed"):
            continue  # a finished pod: its Job says how it ended; a service's was evicted
        trouble = _pod_trouble(pod, template, now)
        if trouble is not None:
            troubles.add(*trouble, fresh=_hash(pod) == spec_hash)
    if is_job:
        return _job(template, index, spec_hash, troubles)
    return _service(template, index, spec_hash, troubles)


def _service(template: Template, index: _Index, spec_hash: str, troubles: _Troubles) -> Observed:
    pods = [
        p
        for p in index.of("Pod", template.component, "service")
        if _phase(p) not in ("Succeeded", "Failed")  # evicted: the ReplicaSet replaced it
    ]
    fresh = [p for p in pods if _hash(p) == spec_hash]
    for deployment in index.of("Deployment", template.component, "service"):
        for kind, text in _deployment_troubles(deployment):
            troubles.add(kind, text, fresh=_hash(deployment) == spec_hash)
    return Observed(
        desired=template.replicas,
        ready=sum(1 for p in fresh if _condition(p, "Ready").get("status") == "True"),
        updated=len(fresh),
        total=len(pods),
        problems=tuple(troubles.problems),
        failing=tuple(troubles.failing),
        unhealthy=tuple(troubles.unhealthy),
    )


def _job(template: Template, index: _Index, spec_hash: str, troubles: _Troubles) -> Observed:
    jobs = index.of("Job", template.component, "job")
    fresh = [j for j in jobs if _hash(j) == spec_hash]
    done = False
    ready = 0
    for job in sorted(jobs, key=_name):
        name = _name(job)
        for kind in ("Failed", "FailureTarget"):
            failed = _condition(job, kind)
            if failed.get("status") == "True":
                troubles.add("failing", _said(f"job {name}", failed), fresh=job in fresh)
                break
        complete = _condition(job, "Complete").get("status") == "True"
        if job in fresh:
            done = done or complete
            running = int((job.get("status") or {}).get("ready") or 0) > 0
            ready += 1 if complete or running else 0
    return Observed(
        desired=template.replicas,
        ready=ready,
        updated=len(fresh),
        total=len(jobs),
        problems=tuple(troubles.problems),
        failing=tuple(troubles.failing),
        unhealthy=tuple(troubles.unhealthy),
        job=True,
        done=done,
    )


class _Troubles:
    """Problems of every pod of a component; failing and unhealthy of those on the spec."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.failing: list[str] = []
        self.unhealthy: list[str] = []

    def add(self, kind: str, text: str, *, fresh: bool) -> None:
        self.problems.append(text)
        if fresh and kind == "failing":
            self.failing.append(text)
        elif fresh and kind == "unhealthy":
            self.unhealthy.append(text)


def _pod_trouble(pod: Obj, template: Template, now: dt.datetime) -> tuple[str, str] | None:
    """("failing" | "unhealthy" | "problem", text) for a pod in trouble, else None."""
    who = f"pod {_name(pod)}"
    scheduled = _condition(pod, "PodScheduled")
    if scheduled.get("status") == "False":
        return "problem", _said(who, scheduled, first_sentence=True)
    status = pod.get("status") or {}
    statuses = [
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ]
    for container in statuses:
        found = _container_trouble(who, container, template)
        if found is not None:
            return found
    ready = _condition(pod, "Ready")
    if (
        _phase(pod) == "Running"
        and ready.get("status") == "False"
        and statuses
        and all("running" in (c.get("state") or {}) for c in statuses)
        and _probe_overdue(template, statuses, now)
    ):
        reason = ready.get("reason") or "NotReady"
        return "unhealthy", f"{who} not ready: its readiness probe fails ({reason})"
    return None


def _container_trouble(who: str, container: Obj, template: Template) -> tuple[str, str] | None:
    waiting = (container.get("state") or {}).get("waiting")
    if not waiting:
        return None
    reason = str(waiting.get("reason") or "Waiting")
    if reason in _STARTING:
        return None
    if reason in _IMAGE:
        return "failing", f"{who} {reason} (image {container.get('image')!r})"
    if reason in CANNOT_START:
        return "failing", _said(who, waiting)
    if reason == "CrashLoopBackOff":
        last = (container.get("lastState") or {}).get("terminated") or {}
        why = last.get("reason") or "Exited"
        detail = f"last exit: {why}, code {last.get('exitCode', '?')}"
        limit = int(template.restart.get("crash_loop_after", 5))
        restarts = int(container.get("restartCount") or 0)
        broken = why in _COMMAND_FAILED or restarts >= limit
        return ("failing" if broken else "problem"), f"{who} {reason} ({detail})"
    return "problem", _said(who, waiting)


def _probe_overdue(template: Template, statuses: list[Obj], now: dt.datetime) -> bool:
    """Whether every container has run longer than its readiness probe needs to pass
    (without a probe a running container is Ready at once: not a probe's doing)."""
    check = template.health_check
    if check is None:
        return False
    grace_s = check.get("start_period_s", 0) + check.get("interval_s", 10) * check.get(
        "failure_threshold", 3
    )
    for container in statuses:
        started = _time((container.get("state") or {}).get("running", {}).get("startedAt"))
        if started is None or (now - started).total_seconds() < grace_s:
            return False
    return True


def _deployment_troubles(deployment: Obj) -> Iterator[tuple[str, str]]:
    """The Deployment controller's conditions, once it has seen the Deployment's spec."""
    metadata = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    if status.get("observedGeneration", 0) < metadata.get("generation", 0):
        return  # its conditions describe an older spec
    who = f"deployment {_name(deployment)}"
    progressing = _condition(deployment, "Progressing")
    if progressing.get("status") == "False":
        yield "failing", _said(who, progressing)
    refused = _condition(deployment, "ReplicaFailure")
    if refused.get("status") == "True":
        yield "problem", _said(who, refused)


def _waiting(template: Template, seen: Mapping[str, Observed]) -> tuple[str, ...]:
    """A job's dependencies that are not yet there (a service with no ready replica, a
    job not done): the runtime starts jobs in order. Services start together on
    Kubernetes, so they wait for nothing."""
    if template.type != "job":
        return ()
    return tuple(
        d
        for d in template.depends_on
        if d in seen and not (seen[d].done if seen[d].job else seen[d].ready > 0)
    )


def _said(who: str, what: Obj, *, first_sentence: bool = False) -> str:
    """`<who> <Reason> (<message>)`: a condition's or a container state's words."""
    reason = what.get("reason") or what.get("type") or "Unknown"
    message = " ".join(str(what.get("message") or "").split())
    if first_sentence and ". " in message:
        message = message.split(". ", 1)[0] + "."
    if len(message) > _MESSAGE_MAX:
        message = message[: _MESSAGE_MAX - 1] + "…"
    return f"{who} {reason} ({message})" if message else f"{who} {reason}"


def _condition(obj: Obj, kind: str) -> Obj:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind:
            found: Obj = condition
            return found
    return {}


def _labels(obj: Obj) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _hash(obj: Obj) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(SPEC_HASH)
    return str(value) if value is not None else None


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
