"""The kubernetes runtime: one tenant's stack instance as objects on a cluster.

`converge(tenant, instance)` renders the tenant (`render.render_tenant`, the same
objects `armillary render` prints), server-side applies each object that changed
(field manager `armillary`, forced: Armillary owns what it renders), prunes what is
no longer rendered, and observes the tenant from the watch cache
(`status.observe`). `instance=None` deletes everything the tenant's ApplySet holds,
then its namespace; the step is idle once nothing is left.

Requests per step. What was applied last is kept per tenant as a digest of each
object; an object whose digest did not change is not sent again, so a step that
changes nothing costs no request, and a tenant's first apply costs one request per
object plus one read of its ApplySet parent. Pruning follows KEP-3659: an object no
longer rendered is deleted by name when this process applied it; after a restart
(nothing remembered) the parent's `applyset.kubernetes.io/contains-group-kinds` says
which kinds to list, by the `applyset.kubernetes.io/part-of` label, and what the
render no longer holds is deleted. `requests` counts them per tenant.

Observation. One watch per kind (Deployments, ReplicaSets, Pods, Jobs, CronJobs,
label `app.kubernetes.io/managed-by=armillary`, all namespaces) keeps an in-memory
copy per namespace; each event publishes a `Workload` change for the tenant the
object's `armillary.dev/tenant` label names, which brings the tenant's controller
back. A watch that breaks is started again after a pause; the copy is kept meanwhile.

Seed jobs run in `depends_on` order, sequenced by Armillary as on nodes: a Job
whose dependencies are not ready (a service) or done (a job) in the watch cache is
left out of the step (`held_back`; `status.observe` says what it waits for), and
applied by the step a watch event on them brings. A Job already on the cluster is
never pulled back.

Failures stay with the tenant: an unreadable kubeconfig, an unreachable API server
or a refused object come back as `Outcome.problem`, never as an exception, so the
tenant's status says which Cluster and why, and other tenants go on. A component
that runs a process (no image) is a problem on that component; the others run.

Secrets. The Secrets a tenant's components use (those it may use: its own or
shared) are read from the store when it is applied and written to its namespace as
Kubernetes Secrets (`stringData`), members of its ApplySet; their values are held
in memory for the apply only, and what is kept is a digest of each object.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx2
import orjson
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ConfigError
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from armillary.resources import naming
from armillary.resources.cluster import ClusterSpec
from armillary.resources.schedule import Schedule
from armillary.resources.tenant import Org, Tenant
from armillary.runtime import rollout
from armillary.runtime.base import Outcome, Problem
from armillary.runtime.instance import Instance, Template
from armillary.runtime.kubernetes import inputs, render, status, tenancy
from armillary.runtime.kubernetes.model import Cluster, TenantView
from armillary.store import repository
from armillary.store.database import Database
from armillary.store.feed import Change

log = logging.getLogger(__name__)

FIELD_MANAGER = "armillary"
WORKLOAD = "Workload"
"""The feed kind a watch event publishes: `tenant` names the tenant to reconcile."""
MANAGED: dict[str, Any] = {"app.kubernetes.io/managed-by": tenancy.MANAGED_BY}
WATCHED: tuple[Any, ...] = (Deployment, ReplicaSet, Pod, Job, CronJob)
WATCH_RETRY_S = 2.0
TIMEOUT_S = 10.0

HTTPRoute = create_namespaced_resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
Key = tuple[str, str, str]  # (apiVersion/kind, namespace, name)
ViewOf = Callable[[str, Instance], Awaitable[TenantView]]
"""The tenant as the renderer sees it, from its name and instance."""
SecretsOf = Callable[[str, list[str]], Awaitable[dict[str, dict[str, str]]]]
"""The values of those of the named Secrets the tenant may use, by name (in memory
only: they are written to the cluster as Secrets, never logged or kept)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """How to reach the cluster: a kubeconfig's text, or the pod's service account."""

    kubeconfig: str | None = None
    in_cluster: bool = False

    def config(self) -> KubeConfig:
        """The client's configuration; `ValueError` says what is wrong with it."""
        if self.in_cluster:
            try:
                return KubeConfig.from_service_account()
            except (ConfigError, OSError) as exc:
                raise ValueError(f"no in-cluster service account here ({exc})") from None
        try:
            data = YAML(typ="safe", pure=True).load(self.kubeconfig or "")
        except YAMLError as exc:  # never quoted: it may hold credentials
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}" if where is not None else ""
            raise ValueError(f"the kubeconfig is not YAML{at}") from None
        if not isinstance(data, dict) or not data.get("clusters"):
            raise ValueError("the kubeconfig has no clusters (expected a kubeconfig mapping)")
        try:
            config = KubeConfig.from_dict(data)
            config.get()  # its current context must name a cluster and a user
            return config
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the kubeconfig is not usable ({type(exc).__name__})") from None


class KubernetesRuntime:
    """Realises instances as Kubernetes objects on one cluster (see the docstring)."""

    def __init__(
        self,
        *,
        cluster: str,
        settings: Cluster,
        access: Access,
        view: ViewOf,
        publish: Callable[[Change], None],
        secrets: SecretsOf | None = None,
    ) -> None:
        self.name = f"kubernetes/{cluster}"
        self.cluster = cluster
        self._settings = settings
        self._access = access
        self._view = view
        self._secrets = secrets
        self._publish = publish
        self._client: AsyncClient | None = None
        self._applied: dict[str, dict[Key, str]] = {}  # tenant → object → digest applied
        self._cache: dict[str, dict[Key, dict[str, Any]]] = {}  # namespace → watched objects
        self._watches: list[asyncio.Task[None]] = []
        self.requests: dict[str, int] = {}  # tenant → API requests of its last step

    async def close(self) -> None:
        for task in self._watches:
            task.cancel()
        for task in self._watches:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._watches.clear()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None

    def prepare(self, instance: Instance) -> Instance:
        """Images run here (the nodes runtime's problem with them is cleared); a process
        does not (a problem on its component)."""
        return Instance(
            tenant=instance.tenant, templates=tuple(_here(t) for t in instance.templates)
        )

    async def converge(
        self, tenant: str, instance: Instance | None, *, now: dt.datetime
    ) -> Outcome:
        try:
            client = self._connect()
        except ValueError as exc:
            return self._problem("ClusterConfigInvalid", str(exc))
        counter = _Counter()
        try:
            if instance is None:
                return await self._remove(client, tenant, counter)
            return await self._apply(client, tenant, instance, counter, now=now)
        except httpx2.TransportError as exc:
            return self._problem("ClusterUnreachable", f"{type(exc).__name__}: {exc}".rstrip(": "))
        except httpx2.HTTPStatusError as exc:
            return self._problem("ApiRefused", _api_message(exc))
        finally:
            self.requests[tenant] = counter.count

    def _problem(self, reason: str, message: str) -> Outcome:
        return Outcome(
            step=rollout.Step(),
            problem=Problem(reason=reason, message=f"cluster {self.cluster!r}: {message}"),
        )

    def _connect(self) -> AsyncClient:
        if self._client is None:
            config = self._access.config()
            self._client = AsyncClient(
                config=config, field_manager=FIELD_MANAGER, timeout=httpx2.Timeout(TIMEOUT_S)
            )
        if not self._watches:
            client = self._client
            self._watches = [
                asyncio.create_task(self._watch(client, kind), name=f"watch-{kind.__name__}")
                for kind in WATCHED
            ]
        return self._client

    # --- apply ------------------------------------------------------------------------

    async def _apply(
        self,
        client: AsyncClient,
        tenant: str,
        instance: Instance,
        counter: _Counter,
        *,
        now: dt.datetime,
    ) -> Outcome:
        # A component with a problem here (a process: no image; a Secret it may not
        # have) is left out of the render and its problem shown on it, as the nodes
        # runtime does. The rest of the stack runs.
        runnable = Instance(
            tenant=tenant,
            templates=tuple(
                t for t in instance.templates if t.image is not None and t.problem is None
            ),
        )
        view = await self._view(tenant, runnable)
        names = sorted({use.secret for t in runnable.templates for use in t.secrets})
        values = await self._secrets(tenant, names) if self._secrets is not None and names else {}
        if values:  # known keys: one secretKeyRef each, so a Secret wins as on nodes
            view = replace(view, secret_keys={n: tuple(sorted(v)) for n, v in values.items()})
        refusals = list(render.refuse(view, cluster=self._settings))
        if refusals:
            return Outcome(
                step=rollout.Step(),
                problem=Problem(
                    reason="Unrenderable",
                    message=f"cannot run on cluster {self.cluster!r}: "
                    + "; ".join(str(r) for r in dict.fromkeys(refusals)),
                ),
            )
        ns = naming.namespace_name(tenant)
        objects = _with_secrets(
            render.render_tenant(view, cluster=self._settings), view, ns, values
        )
        applied = self._applied.get(tenant)
        if applied is None:  # nothing remembered: what does the cluster hold already?
            applied = await self._members(client, ns, counter)
        # Seed jobs in `depends_on` order, as on nodes: a Job whose dependencies are not
        # ready (a service) or done (a job) yet is not applied; a watch event on them
        # brings the tenant back, and it is applied then.
        before = status.observe(instance.templates, list(self._cache.get(ns, {}).values()), now=now)
        waiting = {name for name, seen in before.items() if seen.job and seen.waiting_for}
        wanted = {
            key: (_digest(o), o)
            for o in objects
            if (key := _key(o)) in applied or not held_back(o, waiting)
        }
        done: dict[Key, str] = {k: d for k, d in applied.items() if k in wanted}
        changed = 0
        for key, (digest, obj) in wanted.items():
            if applied.get(key) == digest:
                continue
            counter.count += 1
            await client.apply(_resource(obj), force=True)
            done[key] = digest
            changed += 1
            self._applied[tenant] = done  # what reached the cluster, if a later one fails
        for key in applied.keys() - wanted.keys():
            changed += await _delete(client, key, counter)
        self._applied[tenant] = done
        observed = status.observe(
            instance.templates, list(self._cache.get(ns, {}).values()), now=now
        )
        for template in instance.templates:
            if template.problem is not None:
                observed[template.component] = rollout.Observed(
                    desired=template.replicas,
                    job=template.type == "job",
                    problems=(template.problem,),
                )
        return Outcome(step=rollout.Step(components=observed), changed=changed)

    async def _members(self, client: AsyncClient, ns: str, counter: _Counter) -> dict[Key, str]:
        """The objects the tenant's ApplySet holds on the cluster (digest unknown: ''),
        as its parent names their kinds; empty when there is no parent."""
        counter.count += 1
        try:
            parent = await client.get(ConfigMap, tenancy.PARENT_NAME, namespace=ns)
        except httpx2.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return {}
            raise
        annotations = parent.metadata.annotations or {} if parent.metadata else {}
        kinds = str(annotations.get("applyset.kubernetes.io/contains-group-kinds", ""))
        held: dict[Key, str] = {("v1/ConfigMap", ns, tenancy.PARENT_NAME): ""}
        part_of = tenancy.applyset_id(ns)
        for group_kind in filter(None, kinds.split(",")):
            resource = _by_group_kind(group_kind)
            if resource is None:
                continue
            counter.count += 1
            async for item in client.list(
                resource, namespace=ns, labels={"applyset.kubernetes.io/part-of": part_of}
            ):
                data = _plain(item)
                labels = (data.get("metadata") or {}).get("labels") or {}
                if labels.get("applyset.kubernetes.io/part-of") == part_of:  # (a fake may ignore
                    held[_key(data)] = ""  # the selector)
        return held

    # --- remove -----------------------------------------------------------------------

    async def _remove(self, client: AsyncClient, tenant: str, counter: _Counter) -> Outcome:
        ns = naming.namespace_name(tenant)
        held = self._applied.pop(tenant, None)
        if held is None:
            held = await self._members(client, ns, counter)
        removed = 0
        for key in sorted(held, key=lambda k: k[0].endswith("/Namespace")):
            if not key[0].endswith("/Namespace"):
                removed += await _delete(client, key, counter)
        counter.count += 1
        try:
            space = await client.get(Namespace, ns)
        except httpx2.HTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise
            self._cache.pop(ns, None)
            return Outcome(step=rollout.Step(), changed=removed)
        if not (space.metadata and space.metadata.deletionTimestamp):
            removed += await _delete(client, ("v1/Namespace", "", ns), counter)
        else:
            removed += 1  # still terminating: not gone yet
        return Outcome(step=rollout.Step(), changed=removed)

    # --- watches ----------------------------------------------------------------------

    async def _watch(self, client: AsyncClient, kind: Any) -> None:
        while True:
            try:
                async for event, item in client.watch(kind, namespace="*", labels=MANAGED):
                    self._seen(str(event), _plain(item))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken watch is started again; the copy is kept
                log.info("cluster %s: %s watch ended (%s); again", self.cluster, kind.__name__, exc)
            await asyncio.sleep(WATCH_RETRY_S)

    def _seen(self, event: str, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if labels.get("app.kubernetes.io/managed-by") != tenancy.MANAGED_BY:
            return  # (a fake API server may not filter by label)
        ns = str(metadata.get("namespace") or "")
        objects = self._cache.setdefault(ns, {})
        if event == "DELETED":
            objects.pop(_key(obj), None)
        else:
            objects[_key(obj)] = obj
        tenant = labels.get("armillary.dev/tenant")
        if tenant:
            self._publish(Change(kind=WORKLOAD, name=str(tenant), tenant=str(tenant)))

    def cached(self, tenant: str) -> list[dict[str, Any]]:
        """What the watches hold for the tenant's namespace now."""
        return list(self._cache.get(naming.namespace_name(tenant), {}).values())


def held_back(obj: Mapping[str, Any], waiting: set[str]) -> bool:
    """Whether `obj` is the Job of a component in `waiting` (its dependencies are
    not ready or done yet): not applied until they are. Pure."""
    if obj.get("kind") != "Job":
        return False
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get("app.kubernetes.io/name") in waiting


def _with_secrets(
    objects: list[dict[str, Any]],
    view: TenantView,
    ns: str,
    values: Mapping[str, Mapping[str, str]],
) -> list[dict[str, Any]]:
    """The rendered objects plus the tenant's Secrets (members of its ApplySet, so
    pruned like the rest), after the parent, whose group-kinds then name Secret."""
    if not values:
        return objects
    part_of = tenancy.applyset_id(ns)
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {
                    **tenancy.tenant_labels(view),
                    "applyset.kubernetes.io/part-of": part_of,
                },
            },
            "type": "Opaque",
            "stringData": dict(values[name]),
        }
        for name in sorted(values)
    ]
    out: list[dict[str, Any]] = []
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == tenancy.PARENT_NAME:
            annotations = obj["metadata"]["annotations"]
            kinds = set(annotations["applyset.kubernetes.io/contains-group-kinds"].split(","))
            annotations["applyset.kubernetes.io/contains-group-kinds"] = ",".join(
                sorted(kinds | {"Secret"})
            )
            out.append(obj)
            out.extend(secrets)
        else:
            out.append(obj)
    return out


def _here(template: Template) -> Template:
    if template.image is not None and template.image_problem:
        env = dict(template.env)
        if template.release is not None:
            env["ARMILLARY_RELEASE"] = template.release
        return replace(template, problem=None, image_problem=False, env=env)
    if template.image is None and template.problem is None:
        problem = (
            f"component {template.component!r} runs a process (command); the kubernetes "
            "runtime runs container images: give it an `image:` or a release with an image "
            "artifact"
        )
        return replace(template, problem=problem)
    return template


def store_views(db: Database) -> ViewOf:
    """What the renderer needs beyond the instance (org, stack, quota, schedules),
    read from `db`. The schedules are those of jobs in the instance: the cluster's
    CronJobs run them (the schedule controller places no run for such a tenant)."""

    async def view(tenant: str, instance: Instance) -> TenantView:
        async with db.read() as conn:
            stored = await repository.get(conn, "Tenant", tenant)
            document = Tenant.model_validate(stored.document()) if stored is not None else None
            org_row = await repository.get(conn, "Org", document.spec.org) if document else None
            schedule_rows = await repository.list_kind(conn, "Schedule") if document else []
        org = Org.model_validate(org_row.document()) if org_row is not None else None
        jobs = {t.component for t in instance.templates if t.type == "job"}
        schedules = (
            tuple(
                s
                for s in inputs.schedules_of(
                    document, [Schedule.model_validate(r.document()) for r in schedule_rows]
                )
                if s.timing.component in jobs
            )
            if document is not None
            else ()
        )
        return TenantView(
            tenant=tenant,
            org=document.spec.org if document is not None else "",
            stack=document.spec.stack if document is not None else "",
            instance=instance,
            schedules=schedules,
            quota=org.spec.tenant_quota if org is not None else None,
        )

    return view


@dataclass(slots=True)
class _Counter:
    count: int = 0


def _key(obj: Mapping[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return (
        f"{obj.get('apiVersion')}/{obj.get('kind')}",
        str(metadata.get("namespace") or ""),
        str(metadata.get("name")),
    )


def _digest(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _resource(obj: Mapping[str, Any]) -> Any:
    return _kind(str(obj["apiVersion"]), str(obj["kind"])).from_dict(dict(obj))


def _kind(api_version: str, kind: str) -> Any:
    """The lightkube resource class of `apiVersion` and `kind` (HTTPRoute included)."""
    return resource_registry.load(api_version, kind)


def _plain(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return item
    data: dict[str, Any] = item.to_dict()
    kind = getattr(item, "kind", None) or type(item).__name__
    data.setdefault("kind", kind)
    data.setdefault("apiVersion", getattr(item, "apiVersion", None) or _API_VERSION.get(kind, "v1"))
    return data


_API_VERSION = {
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "Pod": "v1",
}


def _by_group_kind(group_kind: str) -> Any:
    """The lightkube resource of `Deployment.apps`, `Service`, ... (None if unknown).
    Every group Armillary renders into serves `v1`."""
    kind, _, group = group_kind.partition(".")
    try:
        return _kind(f"{group}/v1" if group else "v1", kind)
    except Exception:  # a kind this version of Armillary does not render
        return None


async def _delete(client: AsyncClient, key: Key, counter: _Counter) -> int:
    """Delete one object by its key; 1 if the request was made (gone already counts)."""
    api_version_kind, ns, name = key
    api_version, _, kind = api_version_kind.rpartition("/")
    resource = _kind(api_version, kind)
    counter.count += 1
    try:
        if ns:
            await client.delete(resource, name, namespace=ns)
        else:
            await client.delete(resource, name)
    except httpx2.HTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise
    return 1


def _api_message(exc: httpx2.HTTPStatusError) -> str:
    """The API server's Status, in words. (Read from the body: lightkube makes an
    `ApiError` only of a response typed exactly `application/json`.)"""
    code = exc.response.status_code
    try:
        body = exc.response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"HTTP {code}"
    reason, message = body.get("reason") or "refused", str(body.get("message") or "")
    return f"{reason} ({code}): {message[:300]}".rstrip(": ")


def settings_of(spec: ClusterSpec) -> Cluster:
    """A Cluster resource's spec → the render settings (`model.Cluster`)."""
    return Cluster(
        ingress=spec.ingress,
        domain=spec.domain,
        ingress_class=spec.ingress_class,
        gateway=spec.gateway,
        gateway_namespace=spec.gateway_namespace,
        storage_class=spec.storage_class,
        access_mode=spec.access_mode,
        data_size=spec.data_size,
    )
