"""A Kubernetes API for tests: kmock's `KubernetesEmulator`, its gaps filled, and a
stand-in for the cluster's own controllers. No Kubernetes API server can be installed
on these machines; this is an emulator, not a cluster (docs/kubernetes.md says so).

kmock keeps objects in memory and serves create, get, list, watch, patch and delete
over HTTP. What it lacks, handled here (listed in docs/kubernetes.md):

- server-side apply of an object that does not exist yet is a 404 there (a PATCH
  only updates): `Emulator` creates it, as the API server does;
- it has no Namespace objects (`/api/v1/namespaces/NAME` is read as a namespace
  prefix): `Emulator` keeps them, and deleting one deletes what it holds, as the
  namespace controller would;
- no resourceVersion, no label selectors (lists and watches return every object of
  the kind): the runtime filters by label itself, and nothing relies on versions;
- a list of a kind no object of has ever existed is a 404: every kind the runtime
  uses is declared up front;
- it has no service proxy (`/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH`):
  `Emulator` answers it by forwarding the request to the address a test gave for
  that Service (`FakeCluster.proxy`), standing in for the Service's pods — when the
  Service exists and has that port; otherwise 503, as the API server answers a
  Service without endpoints.

`Controllers` plays what the cluster would do with what is applied: for each
Deployment it makes the Pods of its current template (named after the template's
`armillary.dev/spec-hash`), Ready, or crash-looping when their image is in
`crashing` (the Pod's status taken from the CrashLoopBackOff fixture in
tests/unit/fixtures/kubernetes/), removes Pods of other templates, and writes the
Deployment's status; a Job completes (unless a test holds its component:
`FakeCluster.hold`); Pods whose Deployment is gone go too (the garbage
collector). It talks to the emulator over HTTP like any controller.

`FakeCluster` runs both on a loop of its own in a thread, so that synchronous tests
and the server process under test can use it; its port is the kernel's, bound by
the emulator's own listening socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import kmock
from kmock._internal import enums, rendering

FIXTURES = Path(__file__).parents[1] / "unit" / "fixtures" / "kubernetes"
HARNESS_AGENT = "armillary-test-controllers"
RESOURCES = (
    "v1/configmaps",
    "v1/secrets",
    "v1/services",
    "v1/persistentvolumeclaims",
    "v1/resourcequotas",
    "v1/pods",
    "apps/v1/deployments",
    "apps/v1/replicasets",
    "batch/v1/jobs",
    "batch/v1/cronjobs",
    "networking.k8s.io/v1/networkpolicies",
    "networking.k8s.io/v1/ingresses",
    "gateway.networking.k8s.io/v1/httproutes",
)
_NAMESPACE = re.compile(r"/api/v1/namespaces/([^/]+)")
_PROXY = re.compile(r"/api/v1/namespaces/([^/]+)/services/([^/:]+)(?::([^/]+))?/proxy(/.*)?")
_FORWARDED = ("Content-Type", "Idempotency-Key", "User-Agent", "Authorization")
SPEC_HASH = "armillary.dev/spec-hash"


def _not_found(what: str) -> aiohttp.web.Response:
    status = {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": 404,
        "reason": "NotFound",
        "message": f"{what} not found",
    }
    return aiohttp.web.json_response(status, status=404)


def _unavailable(message: str) -> aiohttp.web.Response:
    status = {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": 503,
        "reason": "ServiceUnavailable",
        "message": message,
    }
    return aiohttp.web.json_response(status, status=503)


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator with server-side apply creating, and Namespaces."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.backends: dict[tuple[str, str], str] = {}  # (namespace, Service) → base URL
        self.proxied: list[dict[str, Any]] = []  # what the service proxy forwarded
        for plural in RESOURCES:
            self.resources[plural] = kmock.ResourceInfo()

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        match = _NAMESPACE.fullmatch(request.url.path)
        if match is not None:
            return await self._namespace(request, match.group(1))
        proxied = _PROXY.fullmatch(request.url.path)
        if proxied is not None:
            ns, service, port, path = proxied.groups()
            return await self._proxy(request, ns, service, port, path or "/")
        if (
            request.resource is not None
            and request.action == enums.action.UPDATE
            and request.name is not None
            and isinstance(request.data, dict)
        ):
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                if key not in self.objects or self.objects[key].deleted:
                    data = copy.deepcopy(request.data)
                    if key in self.objects:
                        self.objects[key].create(data)
                    else:
                        self.objects[key] = data
                    raw = self.objects[key].raw
                    await self._buses[request.resource].put({"type": "ADDED", "object": raw})
                    created = True
                else:
                    created = False
            if created:  # the update is served as the emulator would, on the new object
                return await super(kmock.KubernetesEmulator, self)._handle(request)
        return await super()._handle(request)

    async def _namespace(self, request: rendering.Request, name: str) -> aiohttp.web.Response:
        if request.method == "PATCH":
            self.namespaces[name] = {**self.namespaces.get(name, {}), **request.data}
            return aiohttp.web.json_response(self.namespaces[name])
        if name not in self.namespaces:
            return _not_found(f"namespaces {name!r}")
        if request.method == "DELETE":
            gone = self.namespaces.pop(name)
            async with self._lock:  # the namespace controller: what it held goes too
                for key, obj in list(self.objects.items()):
                    if key[1] == name and not obj.deleted:
                        obj.delete()
                        event = {"type": "DELETED", "object": obj.last.raw}
                        await self._buses[key[0]].put(event)
            return aiohttp.web.json_response(gone)
        return aiohttp.web.json_response(self.namespaces[name])

    async def _proxy(
        self, request: rendering.Request, ns: str, service: str, port: str | None, path: str
    ) -> aiohttp.web.Response:
        """The service proxy: to the Service's stand-in, if the Service has that port."""
        key = (kmock.resource("v1/services"), ns, service)
        if key not in self.objects or self.objects[key].deleted:
            return _not_found(f"services {service!r}")
        found = self.objects[key]
        ports = [p for p in found.raw.get("spec", {}).get("ports", [])]
        if port is not None and not any(port in (str(p["port"]), p.get("name")) for p in ports):
            return _unavailable(f"no service port {port!r} found for service {service!r}")
        backend = self.backends.get((ns, service))
        if backend is None:
            return _unavailable(f'no endpoints available for service "{service}"')
        headers = {k: request.headers[k] for k in _FORWARDED if k in request.headers}
        self.proxied.append(
            {"namespace": ns, "service": service, "port": port, "path": path, "headers": headers}
        )
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                request.method, backend + path, data=request.body, headers=headers
            ) as answer,
        ):
            body = await answer.read()
            kept = {"Content-Type": answer.headers.get("Content-Type", "application/octet-stream")}
            return aiohttp.web.Response(status=answer.status, body=body, headers=kept)

    def live(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The objects of `plural` (`apps/v1/deployments`) there now, as plain dicts."""
        wanted = kmock.resource(plural)
        return [
            copy.deepcopy(obj.raw)
            for (resource, ns, _), obj in list(self.objects.items())
            if resource == wanted and not obj.deleted and (namespace is None or ns == namespace)
        ]


class Controllers:
    """What the cluster's controllers would do (see the module's docstring)."""

    def __init__(self, emulator: Emulator, url: str) -> None:
        self._emulator = emulator
        self._url = url
        self.crashing: set[str] = set()  # images whose containers crash-loop
        self.holding: set[str] = set()  # components whose Jobs do not complete yet

    async def run(self) -> None:
        headers = {"User-Agent": HARNESS_AGENT}
        async with aiohttp.ClientSession(base_url=self._url, headers=headers) as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, KeyError, ValueError):
                    await self._pass(http)  # (a pass that raced a delete is done again)
                await asyncio.sleep(0.1)

    async def _pass(self, http: aiohttp.ClientSession) -> None:
        deployments = self._emulator.live("apps/v1/deployments")
        pods = self._emulator.live("v1/pods")
        kept: set[tuple[str, str]] = set()
        for deployment in deployments:
            kept |= await self._deployment(http, deployment, pods)
        for pod in pods:
            meta = pod["metadata"]
            owner = meta.get("labels", {}).get("armillary.test/owner")
            if owner and (meta["namespace"], meta["name"]) not in kept:
                await http.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}")
        for job in self._emulator.live("batch/v1/jobs"):
            meta = job["metadata"]
            if meta.get("labels", {}).get("app.kubernetes.io/name") in self.holding:
                continue
            if not (job.get("status") or {}).get("conditions"):
                status = {
                    "succeeded": 1,
                    "conditions": [{"type": "Complete", "status": "True"}],
                }
                await self._patch(
                    http,
                    f"/apis/batch/v1/namespaces/{meta['namespace']}/jobs/{meta['name']}",
                    {"status": status},
                )

    async def _deployment(
        self, http: aiohttp.ClientSession, deployment: dict[str, Any], pods: list[dict[str, Any]]
    ) -> set[tuple[str, str]]:
        meta = deployment["metadata"]
        ns, name = meta["namespace"], meta["name"]
        template = deployment["spec"]["template"]
        spec_hash = template["metadata"].get("annotations", {}).get(SPEC_HASH, "none")
        replicas = int(deployment["spec"].get("replicas", 1))
        image = template["spec"]["containers"][0]["image"]
        crashing = image in self.crashing
        wanted = {f"{name}-{spec_hash[:10]}-{i}" for i in range(replicas)}
        have = {p["metadata"]["name"]: p for p in pods if p["metadata"]["namespace"] == ns}
        for pod_name in sorted(wanted):
            if pod_name not in have:
                pod = self._pod(ns, pod_name, name, template, crashing)
                await self._patch(http, f"/api/v1/namespaces/{ns}/pods/{pod_name}", pod)
        ready = 0 if crashing else replicas
        status = {
            "observedGeneration": int(meta.get("generation", 1)),
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                {"type": "Available", "status": "True" if ready else "False"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }
        if (deployment.get("status") or {}) != status:
            await self._patch(
                http, f"/apis/apps/v1/namespaces/{ns}/deployments/{name}", {"status": status}
            )
        return {(ns, n) for n in wanted}

    def _pod(
        self, ns: str, name: str, owner: str, template: dict[str, Any], crashing: bool
    ) -> dict[str, Any]:
        container = template["spec"]["containers"][0]
        if crashing:
            fixture = json.loads((FIXTURES / "pod-crashloopbackoff.json").read_text())
            status = fixture["status"]
            for entry in status.get("containerStatuses", []):
                entry["name"] = container["name"]
                entry["image"] = container["image"]
        else:
            status = {
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"},
                ],
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": f"{container['image']}@sha256:{'0' * 64}",
                        "ready": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                    }
                ],
            }
        labels = {**template["metadata"].get("labels", {}), "armillary.test/owner": owner}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": labels,
                "annotations": dict(template["metadata"].get("annotations", {})),
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": status,
        }

    async def _patch(self, http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/merge-patch+json"}
        async with http.patch(path, data=json.dumps(body), headers=headers) as response:
            await response.read()


class FakeCluster:
    """The emulator and the controllers on a loop in a thread (see the docstring)."""

    def __init__(self, *, controllers: bool = True) -> None:
        self._play = controllers  # False: objects are stored, nothing acts on them
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.url = ""
        self.emulator: Emulator | None = None
        self.controllers: Controllers | None = None
        self._thread = threading.Thread(target=self._main, name="fake-cluster", daemon=True)

    def __enter__(self) -> FakeCluster:
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the Kubernetes emulator did not start")
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def _main(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with Emulator() as emulator, kmock.Server(emulator) as server:
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self.controllers = Controllers(emulator, self.url)
            playing = [asyncio.create_task(self.controllers.run())] if self._play else []
            self._ready.set()
            await self._stop.wait()
            for task in playing:
                task.cancel()
            await asyncio.gather(*playing, return_exceptions=True)

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def kubeconfig(self) -> str:
        """A kubeconfig that reaches the emulator (plain HTTP, no credentials)."""
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
                "users": [{"name": "tests", "user": {}}],
                "contexts": [
                    {"name": "emulator", "context": {"cluster": "emulator", "user": "tests"}}
                ],
                "current-context": "emulator",
            }
        )

    def live(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            assert self.emulator is not None
            return self.emulator.live(plural, namespace)

        result: list[dict[str, Any]] = self.call(read())
        return result

    def namespaces(self) -> set[str]:
        async def read() -> set[str]:
            assert self.emulator is not None
            return set(self.emulator.namespaces)

        result: set[str] = self.call(read())
        return result

    def proxy(self, namespace: str, service: str, url: str) -> None:
        """The service proxy forwards calls to Service `namespace/service` to `url`
        (a process of the test standing in for its pods)."""

        async def note() -> None:
            assert self.emulator is not None
            self.emulator.backends[(namespace, service)] = url.rstrip("/")

        self.call(note())

    def proxied(self) -> list[dict[str, Any]]:
        """What the service proxy forwarded, in order."""

        async def read() -> list[dict[str, Any]]:
            assert self.emulator is not None
            return copy.deepcopy(self.emulator.proxied)

        result: list[dict[str, Any]] = self.call(read())
        return result

    def hold(self, component: str, *, held: bool = True) -> None:
        """Jobs of `component` do not complete (`held=False`: they do again)."""

        async def mark() -> None:
            assert self.controllers is not None
            if held:
                self.controllers.holding.add(component)
            else:
                self.controllers.holding.discard(component)

        self.call(mark())

    def crash(self, image: str) -> None:
        async def mark() -> None:
            assert self.controllers is not None
            self.controllers.crashing.add(image)

        self.call(mark())

    def requests_by_runtime(self) -> list[tuple[str, str]]:
        """(method, path) of every request not made by `Controllers`, watches aside."""

        async def read() -> list[tuple[str, str]]:
            assert self.emulator is not None
            return [
                (r.method, r.url.path)
                for r in list(self.emulator)
                if r.headers.get("User-Agent") != HARNESS_AGENT and "watch" not in r.params
            ]

        result: list[tuple[str, str]] = self.call(read())
        return result
