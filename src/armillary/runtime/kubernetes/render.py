"""One tenant's stack instance → the Kubernetes objects that run it. Pure and
deterministic: the same input gives equal objects in the same order, so `manifest`
can print them byte for byte the same (golden-tested in tests/unit/test_kubernetes_render.py).

Per tenant: a Namespace (`naming.namespace_name`), the ApplySet parent, a
ResourceQuota when the Org sets one, the data PersistentVolumeClaim, NetworkPolicies,
then per component a Service (a service with ports), a Deployment (service) or a Job
(job), per schedule a CronJob, and per public component an Ingress or HTTPRoute.
Secrets are referenced by name, never rendered.

Everything that cannot become a valid object is refused before anything is built,
each with its document and field path (`Unrenderable`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from armillary.resources import naming
from armillary.runtime.instance import Template
from armillary.runtime.kubernetes import names, network, pods, tenancy, workloads
from armillary.runtime.kubernetes.model import (
    Cluster,
    Refusal,
    Scheduled,
    TenantView,
    Unrenderable,
)

Obj = dict[str, Any]

KIND_ORDER = (
    "Namespace",
    "ConfigMap",
    "ResourceQuota",
    "PersistentVolumeClaim",
    "NetworkPolicy",
    "Service",
    "Deployment",
    "Job",
    "CronJob",
    "Ingress",
    "HTTPRoute",
)
_RANK = {kind: i for i, kind in enumerate(KIND_ORDER)}


def render(views: Iterable[TenantView], *, cluster: Cluster) -> list[Obj]:
    """Every tenant's objects, tenants in name order. Raises `Unrenderable` listing every
    refusal of every tenant; nothing is returned then."""
    objects: list[Obj] = []
    refusals: list[Refusal] = []
    for view in sorted(views, key=lambda v: v.tenant):
        found = list(refuse(view, cluster=cluster))
        if found:
            refusals.extend(found)
        elif not refusals:
            objects.extend(render_tenant(view, cluster=cluster))
    if refusals:
        raise Unrenderable(refusals)
    return objects


def render_tenant(view: TenantView, *, cluster: Cluster) -> list[Obj]:
    """The objects of one tenant whose input `refuse` found nothing wrong with."""
    ns = naming.namespace_name(view.tenant)
    templates = view.instance.templates
    urls = _urls(templates)
    members: list[Obj] = [
        tenancy.namespace(view, ns),
        tenancy.data_claim(view, ns, cluster),
        network.same_namespace_policy(view, ns),
    ]
    if view.quota is not None and (quota := tenancy.resource_quota(view, ns, view.quota)):
        members.append(quota)
    order = workloads.job_order(templates)
    by_name = {t.component: t for t in templates}
    for template in templates:
        members.extend(_component(view, ns, template, urls, order, cluster))
    for schedule in view.schedules:
        template = by_name[schedule.timing.component]
        members.append(workloads.cronjob(view, ns, schedule, template, urls))
    tenancy.mark_members(members, ns)
    secrets = sorted({use.secret for t in templates for use in t.secrets})
    members.append(tenancy.applyset_parent(view, ns, members, secrets))
    return sorted(members, key=_position)


def _component(
    view: TenantView,
    ns: str,
    template: Template,
    urls: dict[str, str],
    order: dict[str, int],
    cluster: Cluster,
) -> Iterator[Obj]:
    if template.type == "job":
        yield workloads.job(view, ns, template, urls, order=order[template.component])
        return
    if template.ports:
        yield network.service(view, ns, template)
    yield workloads.deployment(view, ns, template, urls)
    if template.exposure == "public":
        yield network.public_policy(view, ns, template)
        yield network.entry(view, ns, template, cluster)


def _urls(templates: tuple[Template, ...]) -> dict[str, str]:
    """`http://<component>:<first port>` of every service with a port: the Service's
    short name resolves inside the tenant's namespace."""
    urls = {}
    for template in templates:
        if template.type == "service" and template.ports:
            port = next(iter(pods.port_numbers(template).values()))
            urls[template.component] = f"http://{template.component}:{port}"
    return urls


def _position(obj: Obj) -> tuple[int, str, str]:
    metadata = obj["metadata"]
    return (_RANK[obj["kind"]], str(metadata.get("namespace", "")), str(metadata["name"]))


def refuse(view: TenantView, *, cluster: Cluster) -> Iterator[Refusal]:
    """Why this tenant's input cannot be rendered, each at its document and path."""
    by_name = {t.component: t for t in view.instance.templates}
    for i, template in enumerate(view.instance.templates):
        for path, message in _template_refusals(view, template, cluster):
            yield Refusal(
                kind="Stack", name=view.stack, path=f"spec.components[{i}]{path}", message=message
            )
    first: dict[str, Scheduled] = {}
    for schedule in view.schedules:
        problem = names.cronjob_name(schedule.name)
        earlier = first.setdefault(schedule.name, schedule)
        if problem is None and earlier is not schedule:
            problem = (
                f"tenant {view.tenant!r} already has a schedule {schedule.name!r} "
                f"({earlier.kind}/{earlier.document} {earlier.path}); both would be the "
                "CronJob of that name in its namespace: rename one"
            )
        target = by_name.get(schedule.timing.component)
        if problem is None and (target is None or target.type != "job"):
            component = schedule.timing.component
            problem = f"schedules run jobs; {component!r} is not a job of stack {view.stack!r}"
        if problem is not None:
            yield Refusal(
                kind=schedule.kind, name=schedule.document, path=schedule.path, message=problem
            )


def _template_refusals(
    view: TenantView, template: Template, cluster: Cluster
) -> Iterator[tuple[str, str]]:
    if template.image is None:
        if template.release is not None:
            yield (
                ".release",
                (
                    f"{template.problem or f'release {template.release} is a process artifact'}; "
                    "the kubernetes runtime runs container images: record an image artifact"
                ),
            )
        else:
            yield (
                ".command",
                (
                    f"component {template.component!r} runs a process (command); the kubernetes "
                    "runtime runs container images: give it an `image:` or a release with an "
                    "image artifact"
                ),
            )
    problem = names.service_name(template.component)
    if template.type == "service" and template.ports and problem is not None:
        yield ".name", problem
    for j, (port_name, _) in enumerate(template.ports):
        if (problem := names.port_name(port_name)) is not None:
            yield f".ports[{j}].name", problem
    if template.exposure == "public" and template.type == "service":
        if not template.ports:
            yield ".exposure", "a public component needs a port to serve its host on"
        elif (problem := names.host(network.host(view, template, cluster))) is not None:
            yield ".exposure", problem
    quota = view.quota
    if quota is not None and quota.cpu is not None and not template.cpu_millicores:
        yield ".resources.cpu", "the org sets a CPU quota, so every component needs a cpu request"
    if quota is not None and quota.memory is not None and not template.memory_mb:
        yield (
            ".resources.memory",
            ("the org sets a memory quota, so every component needs a memory request"),
        )
