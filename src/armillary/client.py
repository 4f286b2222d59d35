"""Typed HTTP client of the Armillary API, used by the CLI. The node daemon never uses
it: it speaks only the node protocol, over its WebSocket.

One async class: the CLI drives it with `asyncio.run` at its edge. Answers come back
as the models of `armillary.wire` (the same ones the server declares), so callers
read attributes; `wire.dump(answer)` gives the JSON the server sent. Error responses
(application/problem+json) come back as the matching `armillary.errors` exception,
with the per-place issues of a 4xx kept, so callers print the same messages the
server wrote: 429 is `RateLimited` and 502/503/504 `TemporaryError`, each with the
`Retry-After` delay.

Idempotent requests (GET, HEAD, PUT, DELETE, and a POST that carries an idempotency
key) answered 429/502/503/504 are sent again after a capped exponential backoff that
waits at least Retry-After, a bounded number of times (`Retry`); then the error is
raised. Other POSTs are never repeated: the first may have taken effect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from armillary import wire
from armillary.errors import (
    ArmillaryError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    Issue,
    NotFound,
    RateLimited,
    TemporaryError,
    TooLarge,
    Unauthorized,
)
from armillary.resources import kinds

_BY_STATUS: dict[int, type[ArmillaryError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
}
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
M = TypeVar("M", bound=BaseModel)
PAGE = 500  # items per page of the lists read whole on the server (api/paging.py)
Sleep = Callable[[float], Awaitable[None]]


class Unreachable(ArmillaryError):
    """The server did not answer at all."""


class ServerError(ArmillaryError):
    """The server answered a 5xx other than 502/503/504 (those are `TemporaryError`s):
    it failed, the request was not wrong. Not retried, as a POST may have taken effect."""

    title = "Server unreachable"


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """How often, and after how long, an idempotent request is sent again."""

    attempts: int = 4
    """Sends in all, the first included."""
    base_s: float = 0.5
    cap_s: float = 10.0

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float | None:
        """Seconds to wait before send `attempt + 1` (after `attempt` sends failed),
        or None when no send is left or the server asked for a longer wait than the
        cap: then the caller hears of it at once, with the server's delay."""
        if attempt >= self.attempts:
            return None
        backoff = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        if retry_after_s is None:
            return backoff
        if retry_after_s > self.cap_s:
            return None
        return max(backoff, retry_after_s)


class Client:
    """`async with Client(url, token) as api: await api.get("tenant", "acme")`."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout_s: float = 30.0,
        retry: Retry | None = None,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.retry = retry or Retry()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout_s, transport=transport
        )

    @property
    def authorization(self) -> str | None:
        """The Authorization header every request carries (the WebSocket's too)."""
        found: str | None = self._http.headers.get("Authorization")
        return found

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any
    ) -> Any:
        """The JSON answer of one request, sent again while it may be (see `Retry`)."""
        repeatable = idempotent or method in IDEMPOTENT
        attempt = 1
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise Unreachable(
                    f"cannot reach the Armillary server at {self.url} ({type(exc).__name__}); "
                    "is `armillary server` running? Set ARMILLARY_URL or --server to point "
                    "elsewhere"
                ) from None
            if response.status_code < 400:
                return response.json()
            error = _error(response)
            wait_s = (
                self.retry.delay_s(attempt, _retry_after_s(response))
                if repeatable and isinstance(error, TemporaryError)
                else None
            )
            if wait_s is None:
                raise error
            await self._sleep(wait_s)
            attempt += 1

    async def _answer(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(await self._call(method, path, **kwargs))

    async def pages(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        limit: int | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The items of a paged list (api/paging.py), one page at a time: each asked
        for with the `metadata.continue` of the one before, until the server says no
        more follow or `limit` items (all, without it) have come. Pages hold at most
        `page_size` items (a list may cap it lower)."""
        token: str | None = None
        had = 0
        while limit is None or had < limit:
            query = dict(params or {})
            query["limit"] = page_size if limit is None else min(page_size, limit - had)
            if token is not None:
                query["continue"] = token
            answer = await self._call("GET", path, params=query)
            items: list[dict[str, Any]] = answer["items"]
            had += len(items)
            yield items
            token = (answer.get("metadata") or {}).get("continue")
            if token is None:
                return

    async def _paged(
        self,
        model: type[M],
        path: str,
        params: dict[str, Any] | None = None,
        *,
        limit: int | None = None,
        page_size: int = 100,
    ) -> list[M]:
        """Every item of a paged list (or the first `limit`), as `model`."""
        found: list[M] = []
        async for page in self.pages(path, params, limit=limit, page_size=page_size):
            found.extend(model.model_validate(i) for i in page)
        return found

    async def list_kind(
        self, kind: str, *, selector: str | None = None, limit: int | None = None
    ) -> list[wire.Resource]:
        """Every resource of `kind` (or the first `limit`), in name order, page by page."""
        params = {"selector": selector} if selector else None
        path = f"/api/v1/{kinds.lookup(kind).plural}"
        return await self._paged(wire.Resource, path, params, limit=limit, page_size=PAGE)

    async def get(self, kind: str, name: str) -> wire.Resource:
        return await self._answer(wire.Resource, "GET", _path(kind, name))

    async def delete(self, kind: str, name: str, *, cascade: bool = False) -> wire.ResourceWritten:
        params = {"cascade": "true"} if cascade else None
        return await self._answer(wire.ResourceWritten, "DELETE", _path(kind, name), params=params)

    async def apply(
        self, documents: list[dict[str, Any]], *, prune: bool = False
    ) -> list[wire.AppliedItem]:
        body = {"documents": documents, "prune": prune}
        return (await self._answer(wire.Applied, "POST", "/api/v1/apply", json=body)).results

    async def plan(
        self, documents: list[dict[str, Any]], *, prune: bool = False
    ) -> list[wire.Change]:
        body = {"documents": documents, "prune": prune}
        return (await self._answer(wire.Plan, "POST", "/api/v1/plan", json=body)).changes

    async def doctor(self) -> wire.Doctor:
        return await self._answer(wire.Doctor, "GET", "/api/v1/doctor")

    async def retention(self) -> wire.Retention:
        return await self._answer(wire.Retention, "GET", "/api/v1/retention")

    async def version(self) -> wire.Version:
        return await self._answer(wire.Version, "GET", "/api/v1/version")

    async def servers(self) -> list[wire.Server]:
        return (await self._answer(wire.ServerList, "GET", "/api/v1/servers")).items

    async def nodes(self, *, limit: int | None = None) -> list[wire.Node]:
        return await self._paged(wire.Node, "/api/v1/nodes", limit=limit, page_size=PAGE)

    async def set_schedulable(self, node: str, *, schedulable: bool) -> wire.Node:
        verb = "uncordon" if schedulable else "cordon"
        return await self._answer(wire.Node, "POST", f"/api/v1/nodes/{quote(node, safe='')}/{verb}")

    async def drain(self, node: str, *, deadline_s: int | None) -> wire.Node:
        """Cordon `node` and move its replicas away; what still runs there after
        `deadline_s` (None: never) is stopped."""
        path = f"/api/v1/nodes/{quote(node, safe='')}/drain"
        return await self._answer(wire.Node, "POST", path, json={"deadline_s": deadline_s})

    async def replicas(
        self, *, tenant: str | None = None, component: str | None = None
    ) -> list[wire.Replica]:
        return (await self.replica_list(tenant=tenant, component=component)).items

    async def replica_list(
        self,
        *,
        tenant: str | None = None,
        component: str | None = None,
        selector: str | None = None,
    ) -> wire.ReplicaList:
        """The replicas placed (`items`) and those no node takes (`unplaced`); with
        `selector`, of the tenants whose labels it matches."""
        asked = {"tenant": tenant, "component": component, "selector": selector}
        params = {k: v for k, v in asked.items() if v}
        return await self._answer(wire.ReplicaList, "GET", "/api/v1/replicas", params=params)

    async def logs(
        self,
        replica_id: str,
        *,
        follow: bool,
        tail: int | None,
        since_s: float | None,
        previous: bool = False,
        timestamps: bool = False,
    ) -> AsyncIterator[str]:
        """A replica's output as it arrives (`previous`: its last finished run's)."""
        params: dict[str, Any] = {"follow": follow}
        if previous:
            params["previous"] = True
        if timestamps:
            params["timestamps"] = True
        if tail is not None:
            params["tail"] = tail
        if since_s is not None:
            params["since_s"] = since_s
        path = f"/api/v1/replicas/{quote(replica_id, safe='')}/logs"
        async with self._stream("GET", path, params=params, timeout=None) as response:
            async for text in response.aiter_text():
                yield text

    async def exec(
        self, replica_id: str, command: list[str], *, timeout_s: float | None = None
    ) -> AsyncIterator[wire.ExecEvent]:
        """NDJSON events of a command run in a replica: {fd, data}… then {exit_code}."""
        path = f"/api/v1/replicas/{quote(replica_id, safe='')}/exec"
        body = {"command": command, "timeout_s": timeout_s}
        async with self._stream("POST", path, json=body, timeout=None) as response:
            async for line in response.aiter_lines():
                if line.strip():
                    yield wire.ExecEvent.model_validate_json(line)

    async def provision(self, request: dict[str, Any]) -> wire.ProvisionRun:
        """Start a provisioning run; sent again on 429/503 only with an idempotency key."""
        return await self._answer(
            wire.ProvisionRun,
            "POST",
            "/api/v1/provision/tenants",
            json=request,
            idempotent=bool(request.get("idempotency_key")),
        )

    async def deprovision(
        self, tenant: str, *, idempotency_key: str | None = None
    ) -> wire.ProvisionRun:
        params = {"idempotency_key": idempotency_key} if idempotency_key else None
        path = f"/api/v1/provision/tenants/{quote(tenant, safe='')}"
        return await self._answer(wire.ProvisionRun, "DELETE", path, params=params)

    async def provision_run(self, run_id: str) -> wire.ProvisionRun:
        path = f"/api/v1/provision/runs/{quote(run_id, safe='')}"
        return await self._answer(wire.ProvisionRun, "GET", path)

    async def collect_tenant_key(self, run_id: str) -> wire.TenantKey:
        path = f"/api/v1/provision/runs/{quote(run_id, safe='')}/token"
        return await self._answer(wire.TenantKey, "POST", path)

    async def provision_runs(
        self, *, tenant: str | None = None, limit: int | None = None
    ) -> list[wire.ProvisionRun]:
        params = {"tenant": tenant} if tenant else None
        path = "/api/v1/provision/runs"
        return await self._paged(wire.ProvisionRun, path, params, limit=limit, page_size=PAGE)

    async def rollouts(self, tenant: str, *, component: str | None = None) -> wire.Rollouts:
        params = {"component": component} if component else None
        path = f"/api/v1/tenants/{quote(tenant, safe='')}/rollouts"
        return await self._answer(wire.Rollouts, "GET", path, params=params)

    async def undo_rollout(
        self, tenant: str, component: str, *, to_revision: int | None = None
    ) -> wire.Undone:
        path = f"/api/v1/tenants/{quote(tenant, safe='')}/rollouts/{quote(component, safe='')}/undo"
        return await self._answer(wire.Undone, "POST", path, json={"to_revision": to_revision})

    async def scheduled_jobs(self, *, limit: int | None = None) -> list[wire.ScheduledJob]:
        """Every schedule (Schedule resources and tenants' inline ones) with its status."""
        path = "/api/v1/scheduled-jobs"
        return await self._paged(wire.ScheduledJob, path, limit=limit, page_size=PAGE)

    async def run_schedule(self, name: str) -> wire.ScheduleRun:
        """Start a run of schedule `name` (`<tenant>/<name>` for an inline one) now."""
        path = f"/api/v1/schedules/{quote(name, safe='/')}/run"
        return await self._answer(wire.ScheduleRun, "POST", path)

    async def schedule_runs(self, name: str, *, limit: int | None = None) -> list[wire.ScheduleRun]:
        """The runs of schedule `name` still recorded, newest first."""
        path = f"/api/v1/schedules/{quote(name, safe='/')}/runs"
        return await self._paged(wire.ScheduleRun, path, limit=limit, page_size=PAGE)

    async def create_key(
        self,
        *,
        role: str,
        description: str = "",
        expires_in_s: int | None = None,
        node: str | None = None,
    ) -> wire.NewApiKey:
        body: dict[str, object] = {
            "role": role,
            "description": description,
            "expires_in_s": expires_in_s,
        }
        if node is not None:
            body["node"] = node
        return await self._answer(wire.NewApiKey, "POST", "/api/v1/tokens", json=body)

    async def keys(self, *, limit: int | None = None) -> list[wire.ApiKey]:
        return await self._paged(wire.ApiKey, "/api/v1/tokens", limit=limit, page_size=PAGE)

    async def revoke_key(self, token_id: str) -> wire.ApiKey:
        path = f"/api/v1/tokens/{quote(token_id, safe='')}/revoke"
        return await self._answer(wire.ApiKey, "POST", path)

    async def tenant_token(self, tenant: str, *, ttl_s: int) -> wire.TenantToken:
        path = f"/api/v1/tenants/{quote(tenant, safe='')}/tokens"
        return await self._answer(wire.TenantToken, "POST", path, json={"ttl_s": ttl_s})

    async def revoke_tenant_tokens(self, tenant: str) -> wire.TenantTokensRevoked:
        path = f"/api/v1/tenants/{quote(tenant, safe='')}/tokens/revoke"
        return await self._answer(wire.TenantTokensRevoked, "POST", path)

    async def create_user(self, *, name: str, password: str, role: str) -> wire.User:
        body = {"name": name, "password": password, "role": role}
        return await self._answer(wire.User, "POST", "/api/v1/users", json=body)

    async def login_link(self, user: str, *, create: bool = False) -> wire.LoginLink:
        body = {"user": user, "create": create}
        return await self._answer(wire.LoginLink, "POST", "/api/v1/auth/links", json=body)

    async def users(self, *, limit: int | None = None) -> list[wire.User]:
        return await self._paged(wire.User, "/api/v1/users", limit=limit, page_size=PAGE)

    async def delete_user(self, name: str) -> wire.UserDeleted:
        path = f"/api/v1/users/{quote(name, safe='')}"
        return await self._answer(wire.UserDeleted, "DELETE", path)

    async def audit(
        self, filters: dict[str, str | int | None], *, before_id: int | None = None
    ) -> wire.AuditPage:
        """One page of the audit log, newest first; pass its `next` as `before_id` for
        the page before. Filters: principal, kind, name, tenant, verb, status, outcome,
        request_id, since, until (ISO 8601), limit."""
        params = {k: v for k, v in filters.items() if v is not None}
        if before_id is not None:
            params["before_id"] = before_id
        return await self._answer(wire.AuditPage, "GET", "/api/v1/audit", params=params)

    async def events(
        self, filters: dict[str, str | None], *, limit: int | None = None
    ) -> list[wire.Event]:
        """Inbound webhook events, newest first: every one (or the first `limit`),
        fetched page by page. Filters: source, tenant, state."""
        params = {k: v for k, v in filters.items() if v is not None}
        return await self._paged(wire.Event, "/api/v1/events", params, limit=limit)

    async def start_agent_run(
        self, tenant: str, *, input: dict[str, Any], component: str | None = None
    ) -> wire.AgentRun:
        """Queue a run of `tenant`'s agent with `input`; the run as queued."""
        body: dict[str, Any] = {"tenant": tenant, "input": input}
        if component is not None:
            body["component"] = component
        return await self._answer(wire.AgentRun, "POST", "/api/v1/agents/run", json=body)

    async def agent_runs(
        self, filters: dict[str, str | None], *, limit: int | None = None
    ) -> list[wire.AgentRun]:
        """Agent runs, newest first: every one (or the first `limit`), page by page.
        Filters: tenant, state, event."""
        params = {k: v for k, v in filters.items() if v is not None}
        path = "/api/v1/runs"
        return await self._paged(wire.AgentRun, path, params, limit=limit, page_size=200)

    async def agent_run(self, run_id: str) -> wire.AgentRun:
        return await self._answer(wire.AgentRun, "GET", f"/api/v1/runs/{quote(run_id, safe='')}")

    async def retry_agent_run(self, run_id: str) -> wire.AgentRun:
        """Queue a failed or dead run again."""
        path = f"/api/v1/runs/{quote(run_id, safe='')}/retry"
        return await self._answer(wire.AgentRun, "POST", path)

    async def reveal_secret(self, name: str) -> wire.Resource:
        """Secret `name` with its values in clear (admin; the server audits it)."""
        path = f"/api/v1/secrets/{quote(name, safe='')}/reveal"
        return await self._answer(wire.Resource, "GET", path)

    @contextlib.asynccontextmanager
    async def _stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        try:
            async with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error(response)
                yield response
        except httpx.TransportError as exc:
            raise Unreachable(
                f"lost the Armillary server at {self.url} ({type(exc).__name__})"
            ) from None


def _path(kind: str, name: str) -> str:
    return f"/api/v1/{kinds.lookup(kind).plural}/{quote(name, safe='')}"


def _error(response: httpx.Response) -> ArmillaryError:
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    detail = str(body.get("detail") or response.reason_phrase)
    status = response.status_code
    if status in (400, 413, 422):
        issues = [
            Issue(
                path=str(e.get("path", "")),
                message=str(e.get("message", "")),
                document=e.get("document"),
            )
            for e in body.get("errors") or []
        ] or [Issue(path="", message=detail)]
        return TooLarge(issues) if status == 413 else Invalid(issues)
    if status in _BY_STATUS:
        return _BY_STATUS[status](detail)
    delay_s = _retry_after_s(response)
    if status == 429:
        return RateLimited(detail, delay_s=1.0 if delay_s is None else delay_s)
    if status in (408, 502, 503, 504):
        return TemporaryError(detail, delay_s=1.0 if delay_s is None else delay_s)
    if status >= 500:
        return ServerError(f"server error {status}: {detail}")
    return ArmillaryError(f"server error {status}: {detail}")


def _retry_after_s(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds, if the answer has one in seconds (as this server sends
    it; an HTTP date is not read, and the backoff alone applies)."""
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None
