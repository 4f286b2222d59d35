"""Templates → Deployments (services), Jobs (jobs) and CronJobs (schedules).

A Job's pod template cannot change once created, so a Job is named after its
component and spec hash (`seed-<8 hex>`): a changed job is a new Job, and the old one
is pruned with the ApplySet. Jobs carry their place in the `depends_on` order
(`armillary.dev/order`, 0 first) and their dependencies: Armillary's runtime starts
them in that order; applied by hand, they all start at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from armillary.resources import naming
from armillary.runtime.instance import Template
from armillary.runtime.kubernetes import pods, tenancy
from armillary.runtime.kubernetes.model import Scheduled, TenantView

Obj = dict[str, Any]

_RESTART = {"always": "OnFailure", "on-failure": "OnFailure", "never": "Never"}


def selector(view: TenantView, template: Template) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": template.component,
        "app.kubernetes.io/instance": naming.instance_name(template.component, view.tenant),
    }


def component_labels(view: TenantView, template: Template, *, role: str) -> dict[str, str]:
    return tenancy.labels(
        view,
        name=template.component,
        instance=naming.instance_name(template.component, view.tenant),
        component=role,
    )


SPEC_HASH = "armillary.dev/spec-hash"


def _annotations(template: Template, spec_hash: str) -> dict[str, str]:
    notes = {SPEC_HASH: spec_hash}
    if template.release:
        notes["armillary.dev/release"] = template.release
    if template.depends_on:
        notes["armillary.dev/depends-on"] = ",".join(template.depends_on)
    return notes


def _pod_annotations(spec_hash: str) -> dict[str, str]:
    """Pods carry the spec hash of the template they were made from: status counts a
    pod as on the current spec by it (`status.observe`)."""
    return {SPEC_HASH: spec_hash}


def deployment(view: TenantView, ns: str, template: Template, urls: Mapping[str, str]) -> Obj:
    object_labels = component_labels(view, template, role="service")
    metadata = tenancy.meta(template.component, ns, object_labels)
    spec_hash = template.spec_hash()  # once per object: rendering 1,000 tenants counts it
    metadata["annotations"] = _annotations(template, spec_hash)
    policy = template.policy
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": template.replicas,
            "selector": {"matchLabels": selector(view, template)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": policy.max_surge,
                    "maxUnavailable": policy.max_unavailable,
                },
            },
            "progressDeadlineSeconds": pods.seconds(policy.progress_deadline_s),
            "template": {
                "metadata": {
                    "labels": dict(object_labels),
                    "annotations": _pod_annotations(spec_hash),
                },
                "spec": pods.pod_spec(view, template, urls, restart="Always"),
            },
        },
    }


def job_spec(view: TenantView, template: Template, urls: Mapping[str, str], spec_hash: str) -> Obj:
    policy = str(template.restart.get("policy") or "on-failure")
    spec: Obj = {
        "backoffLimit": 0
        if policy == "never"
        else int(template.restart.get("crash_loop_after", 5)),
        "template": {
            "metadata": {
                "labels": component_labels(view, template, role="job"),
                "annotations": _pod_annotations(spec_hash),
            },
            "spec": pods.pod_spec(view, template, urls, restart=_RESTART[policy]),
        },
    }
    if template.timeout_s is not None:
        spec["activeDeadlineSeconds"] = pods.seconds(template.timeout_s)
    return spec


def job(
    view: TenantView, ns: str, template: Template, urls: Mapping[str, str], *, order: int
) -> Obj:
    spec_hash = template.spec_hash()
    name = f"{template.component}-{spec_hash[:8]}"
    metadata = tenancy.meta(name, ns, component_labels(view, template, role="job"))
    metadata["annotations"] = {
        **_annotations(template, spec_hash),
        "armillary.dev/order": str(order),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": job_spec(view, template, urls, spec_hash),
    }


def cronjob(
    view: TenantView, ns: str, schedule: Scheduled, template: Template, urls: Mapping[str, str]
) -> Obj:
    timing = schedule.timing
    object_labels = component_labels(view, template, role="schedule")
    spec: Obj = {
        "schedule": timing.cron,
        "timeZone": timing.time_zone,
        "concurrencyPolicy": timing.concurrency_policy,
        "suspend": timing.suspend,
        "successfulJobsHistoryLimit": timing.history_limit,
        "failedJobsHistoryLimit": timing.history_limit,
        "jobTemplate": {
            "metadata": {"labels": dict(object_labels)},
            "spec": job_spec(view, template, urls, template.spec_hash()),
        },
    }
    if timing.starting_deadline_s is not None:
        spec["startingDeadlineSeconds"] = timing.starting_deadline_s
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": tenancy.meta(schedule.name, ns, object_labels),
        "spec": spec,
    }


def job_order(templates: tuple[Template, ...]) -> dict[str, int]:
    """Each job's place when jobs run in `depends_on` order (stack order breaks ties).
    Dependencies on services are not jobs and do not count here."""
    jobs = {t.component: t for t in templates if t.type == "job"}
    order: dict[str, int] = {}
    while len(order) < len(jobs):
        for name, template in jobs.items():
            if name not in order and all(d in order or d not in jobs for d in template.depends_on):
                order[name] = len(order)
                break
        else:  # a cycle; the Stack's validation refuses them, so this is defensive
            for name in jobs:
                order.setdefault(name, len(order))
    return order
