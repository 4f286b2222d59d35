"""Agent calls to a tenant on a Kubernetes cluster: to its component's Service.

The agent run worker (ingress/runner.py) calls a tenant on the nodes runtime at one
of its replicas. A tenant on a cluster (its status says `runtime:
kubernetes/<cluster>`) is called at its component's Service, which spreads the calls
over the ready pods:

- when the server runs inside that cluster (the Cluster's `in_cluster`), by cluster
  DNS, `http://<service>.<namespace>.svc:<port>/run`, on the worker's own client;
- otherwise through the API server's service proxy,
  `<server>/api/v1/namespaces/<namespace>/services/<service>:<port>/proxy/run`,
  with the kubeconfig's credentials and TLS: one client per Cluster, kept while its
  access stays the same.

The port is the Service's first (the component's first port, as rendered), read
from the API server once per batch of runs and (tenant, component), after the
store's read of the batch (`Clusters.reach`, inside it) is over. A Cluster gone, a
kubeconfig not usable or a Service not there yet fail the attempt, retried like a
component without a healthy replica on nodes.

Invariants: the kubeconfig's values stay in memory (never logged, never in an
error); an answer is clipped at the worker's `max_bytes` as on nodes; nothing is
taken from the environment (no proxies); the caller bounds each call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import httpx2
from lightkube.config import client_adapter

from armillary.auth import secrets as secret_values
from armillary.auth.secrets import Vault
from armillary.errors import TemporaryError
from armillary.ingress import agent_http
from armillary.resources.cluster import Cluster
from armillary.runtime.kubernetes.runtime import Access
from armillary.store import repository
from armillary.store.database import Tx

log = logging.getLogger("armillary.runs")

PREFIX = "kubernetes/"  # a tenant status's `runtime` on a cluster
READ_TIMEOUT_S = 10.0  # reading a Service


@dataclass(frozen=True, slots=True, kw_only=True)
class Reach:
    """How the worker reaches one cluster, read from the store."""

    cluster: str
    access: Access
    fingerprint: str  # of the Cluster's spec and its kubeconfig: a change makes a new client


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where a call to a component's Service goes: `url` on the worker's own client
    (`via` None), or `url` a path on the API server of cluster `via`."""

    url: str
    via: str | None = None


def cluster_of(runtime: str) -> str | None:
    """The cluster a tenant status's `runtime` names, None for `nodes`."""
    return runtime.removeprefix(PREFIX) if runtime.startswith(PREFIX) else None


def dns_url(namespace: str, service: str, port: int, path: str) -> str:
    """The Service by cluster DNS (inside the cluster). Pure."""
    return f"http://{service}.{namespace}.svc:{port}/{path.lstrip('/')}"


def proxy_path(namespace: str, service: str, port: int, path: str) -> str:
    """The Service through the API server's service proxy. Pure."""
    return f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"


def first_port(service: object) -> int | None:
    """The first port of a Service as the API returns it (JSON), None if it has none."""
    if not isinstance(service, dict):
        return None
    ports = (service.get("spec") or {}).get("ports") or []
    port = ports[0].get("port") if ports and isinstance(ports[0], dict) else None
    return port if isinstance(port, int) else None


class Clusters:
    """The worker's clients of the clusters its tenants run on (see the docstring).

    Made inside a running event loop, and closed with `aclose` on the same loop."""

    def __init__(self, vault: Vault | None) -> None:
        self._vault = vault
        self._clients: dict[str, tuple[str, httpx2.AsyncClient]] = {}

    async def reach(self, conn: Tx, names: Collection[str]) -> dict[str, Reach | Exception]:
        """How to reach each of the clusters `names`, from the store (one read each of
        the Clusters and of their kubeconfig Secrets); `TemporaryError` says why not."""
        rows = await repository.get_many(conn, "Cluster", names)
        found: dict[str, Reach | Exception] = {}
        for name in names:
            row = rows.get(name)
            if row is None:
                found[name] = TemporaryError(f"cluster {name!r} does not exist")
                continue
            spec = Cluster.model_validate(row.document()).spec
            access = Access(in_cluster=True)
            if spec.kubeconfig is not None:
                ref = spec.kubeconfig
                values: list[str] = []
                if self._vault is not None:
                    values, _ = await secret_values.values_of(
                        conn, self._vault, [(ref.secret, ref.key)]
                    )
                if not values:
                    found[name] = TemporaryError(
                        f"cluster {name!r}: its kubeconfig, key {ref.key!r} of Secret "
                        f"{ref.secret!r}, cannot be read"
                    )
                    continue
                access = Access(kubeconfig=values[0])
            fingerprint = hashlib.sha256(
                repr((row.spec, access.kubeconfig, access.in_cluster)).encode()
            ).hexdigest()
            found[name] = Reach(cluster=name, access=access, fingerprint=fingerprint)
        return found

    async def routes(
        self,
        wanted: Collection[tuple[str, str, str]],
        reaches: Mapping[str, Reach | Exception],
        *,
        path: str,
    ) -> dict[tuple[str, str, str], Route | Exception]:
        """Per (cluster, namespace, service) in `wanted`, where a call to `path` goes:
        one read of each Service, all at once; `TemporaryError` says why not."""
        keys = sorted(wanted)
        found = await asyncio.gather(
            *(self._route(reaches.get(key[0]), key, path=path) for key in keys),
            return_exceptions=True,
        )
        routes: dict[tuple[str, str, str], Route | Exception] = {}
        for key, route in zip(keys, found, strict=True):
            if isinstance(route, BaseException) and not isinstance(route, Exception):
                raise route
            if isinstance(route, Exception) and not isinstance(route, TemporaryError):
                # Anything else (a malformed server URL, ...) fails the attempt too; it
                # must not end the worker.
                log.warning("agent runs: routing to %s/%s failed", key[1], key[2], exc_info=route)
                route = TemporaryError(
                    f"cluster {key[0]!r}: reaching Service {key[1]}/{key[2]} failed: "
                    f"{type(route).__name__}"
                )
            routes[key] = route
        return routes

    async def _route(
        self, reach: Reach | Exception | None, key: tuple[str, str, str], *, path: str
    ) -> Route:
        cluster, namespace, service = key
        if reach is None:
            raise TemporaryError(f"cluster {cluster!r} was not read")
        if isinstance(reach, Exception):
            raise reach
        client = self._client(reach)
        where = f"/api/v1/namespaces/{namespace}/services/{service}"
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                response = await client.get(where)
        except (httpx2.TransportError, TimeoutError) as exc:
            raise TemporaryError(
                f"cluster {cluster!r}: reading Service {namespace}/{service} failed: "
                f"{type(exc).__name__}"
            ) from None
        if response.status_code == 404:
            raise TemporaryError(f"cluster {cluster!r}: no Service {namespace}/{service} yet")
        if response.status_code != 200:
            raise TemporaryError(
                f"cluster {cluster!r}: reading Service {namespace}/{service} answered "
                f"{response.status_code}"
            )
        try:
            port = first_port(response.json())
        except ValueError:
            port = None
        if port is None:
            raise TemporaryError(f"cluster {cluster!r}: Service {namespace}/{service} has no port")
        if reach.access.in_cluster:
            return Route(url=dns_url(namespace, service, port, path))
        return Route(url=proxy_path(namespace, service, port, path), via=cluster)

    def _client(self, reach: Reach) -> httpx2.AsyncClient:
        kept = self._clients.get(reach.cluster)
        if kept is not None and kept[0] == reach.fingerprint:
            return kept[1]
        try:
            config = reach.access.config().get()
        except (ValueError, KeyError, TypeError) as exc:  # never quoted past its reason
            raise TemporaryError(f"cluster {reach.cluster!r}: {exc}") from None
        if config is None:
            raise TemporaryError(f"cluster {reach.cluster!r}: the kubeconfig has no context")
        params = client_adapter.ConnectionParams(timeout=httpx2.Timeout(None), trust_env=False)
        made = client_adapter.AsyncClient(config, params)
        if kept is not None:
            old = kept[1]
            asyncio.get_running_loop().create_task(old.aclose())
        self._clients[reach.cluster] = (reach.fingerprint, made)
        return made

    async def post(
        self, route: Route, body: bytes, *, headers: Mapping[str, str], max_bytes: int
    ) -> agent_http.Answer:
        """POST `body` (JSON) through the API server of `route.via`; the answer, its
        body clipped at `max_bytes`. `agent_http.CallError` if it could not be made."""
        kept = self._clients.get(route.via or "")
        if kept is None:
            raise agent_http.CallError(f"no client of cluster {route.via!r}")
        sent = {"Content-Type": "application/json", "Accept-Encoding": "identity", **headers}
        try:
            async with kept[1].stream("POST", route.url, content=body, headers=sent) as response:
                kept_body = bytearray()
                async for chunk in response.aiter_bytes():
                    kept_body += chunk
                    if len(kept_body) >= max_bytes:
                        break
                return agent_http.Answer(
                    status=response.status_code, body=bytes(kept_body[:max_bytes])
                )
        except httpx2.HTTPError as exc:
            raise agent_http.CallError(
                f"calling through cluster {route.via!r}'s API server failed: "
                f"{type(exc).__name__}: {exc}".rstrip(": ")
            ) from exc

    async def aclose(self) -> None:
        """Close every client."""
        for _, client in self._clients.values():
            await client.aclose()
        self._clients.clear()
