"""Typed HTTP client of the Armillary API, used by the CLI. The node daemon never uses
it: it speaks only the node protocol, over its WebSocket.

One async class: the CLI drives it with `asyncio.run` at its edge. Error responses
(application/problem+json) come back as the matching `armillary.errors` exception,
with the per-place issues of a 4xx kept, so callers print the same messages the
server wrote.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from armillary.errors import (
    ArmillaryError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    Issue,
    NotFound,
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


class Unreachable(ArmillaryError):
    """The server did not answer at all."""

    title = "Server unreachable"


class Client:
    """`async with Client(url, token) as api: await api.get("tenant", "acme")`."""

    def __init__(self, url: str, token: str | None, *, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout_s)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(
                f"cannot reach the Armillary server at {self.url} ({type(exc).__name__}); "
                "is `armillary server` running? Set ARMILLARY_URL or --server to point elsewhere"
            ) from None
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    async def list_kind(self, kind: str, *, selector: str | None = None) -> list[dict[str, Any]]:
        params = {"selector": selector} if selector else None
        body = await self._call("GET", f"/api/v1/{kinds.lookup(kind).plural}", params=params)
        items: list[dict[str, Any]] = body["items"]
        return items

    async def get(self, kind: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", _path(kind, name))
        return result

    async def delete(self, kind: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", _path(kind, name))
        return result

    async def apply(
        self, documents: list[dict[str, Any]], *, prune: bool = False
    ) -> list[dict[str, Any]]:
        body = await self._call(
            "POST", "/api/v1/apply", json={"documents": documents, "prune": prune}
        )
        results: list[dict[str, Any]] = body["results"]
        return results

    async def plan(
        self, documents: list[dict[str, Any]], *, prune: bool = False
    ) -> list[dict[str, Any]]:
        body = await self._call(
            "POST", "/api/v1/plan", json={"documents": documents, "prune": prune}
        )
        changes: list[dict[str, Any]] = body["changes"]
        return changes

    async def nodes(self) -> list[dict[str, Any]]:
        body = await self._call("GET", "/api/v1/nodes")
        items: list[dict[str, Any]] = body["items"]
        return items

    async def set_schedulable(self, node: str, *, schedulable: bool) -> dict[str, Any]:
        verb = "uncordon" if schedulable else "cordon"
        result: dict[str, Any] = await self._call(
            "POST", f"/api/v1/nodes/{quote(node, safe='')}/{verb}"
        )
        return result

    async def replicas(
        self, *, tenant: str | None = None, component: str | None = None
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"tenant": tenant, "component": component}.items() if v}
        body = await self._call("GET", "/api/v1/replicas", params=params)
        items: list[dict[str, Any]] = body["items"]
        return items

    async def logs(
        self, replica_id: str, *, follow: bool, tail: int | None, since_s: float | None
    ) -> AsyncIterator[str]:
        """A replica's output as it arrives."""
        params: dict[str, Any] = {"follow": follow}
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
    ) -> AsyncIterator[dict[str, Any]]:
        """NDJSON events of a command run in a replica: {fd, data}… then {exit_code}."""
        path = f"/api/v1/replicas/{quote(replica_id, safe='')}/exec"
        body = {"command": command, "timeout_s": timeout_s}
        async with self._stream("POST", path, json=body, timeout=None) as response:
            async for line in response.aiter_lines():
                if line.strip():
                    event: dict[str, Any] = json.loads(line)
                    yield event

    async def provision(self, request: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "/api/v1/provision/tenants", json=request)
        return result

    async def deprovision(
        self, tenant: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        params = {"idempotency_key": idempotency_key} if idempotency_key else None
        path = f"/api/v1/provision/tenants/{quote(tenant, safe='')}"
        result: dict[str, Any] = await self._call("DELETE", path, params=params)
        return result

    async def provision_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "GET", f"/api/v1/provision/runs/{quote(run_id, safe='')}"
        )
        return result

    async def collect_tenant_key(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", f"/api/v1/provision/runs/{quote(run_id, safe='')}/token"
        )
        return result

    async def provision_runs(self, *, tenant: str | None = None) -> list[dict[str, Any]]:
        params = {"tenant": tenant} if tenant else None
        body = await self._call("GET", "/api/v1/provision/runs", params=params)
        items: list[dict[str, Any]] = body["items"]
        return items

    async def rollouts(self, tenant: str, *, component: str | None = None) -> dict[str, Any]:
        params = {"component": component} if component else None
        result: dict[str, Any] = await self._call(
            "GET", f"/api/v1/tenants/{quote(tenant, safe='')}/rollouts", params=params
        )
        return result

    async def undo_rollout(
        self, tenant: str, component: str, *, to_revision: int | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST",
            f"/api/v1/tenants/{quote(tenant, safe='')}/rollouts/{quote(component, safe='')}/undo",
            json={"to_revision": to_revision},
        )
        return result

    async def scheduled_jobs(self) -> list[dict[str, Any]]:
        """Every schedule (Schedule resources and tenants' inline ones) with its status."""
        body = await self._call("GET", "/api/v1/scheduled-jobs")
        items: list[dict[str, Any]] = body["items"]
        return items

    async def run_schedule(self, name: str) -> dict[str, Any]:
        """Start a run of schedule `name` (`<tenant>/<name>` for an inline one) now."""
        path = f"/api/v1/schedules/{quote(name, safe='/')}/run"
        result: dict[str, Any] = await self._call("POST", path)
        return result

    async def schedule_runs(self, name: str) -> list[dict[str, Any]]:
        """The runs of schedule `name` still recorded, newest first."""
        body = await self._call("GET", f"/api/v1/schedules/{quote(name, safe='/')}/runs")
        items: list[dict[str, Any]] = body["items"]
        return items

    async def create_key(
        self, *, role: str, description: str = "", expires_in_s: int | None = None
    ) -> dict[str, Any]:
        body = {"role": role, "description": description, "expires_in_s": expires_in_s}
        result: dict[str, Any] = await self._call("POST", "/api/v1/tokens", json=body)
        return result

    async def keys(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self._call("GET", "/api/v1/tokens"))["items"]
        return items

    async def revoke_key(self, token_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", f"/api/v1/tokens/{quote(token_id, safe='')}/revoke"
        )
        return result

    async def tenant_token(self, tenant: str, *, ttl_s: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", f"/api/v1/tenants/{quote(tenant, safe='')}/tokens", json={"ttl_s": ttl_s}
        )
        return result

    async def revoke_tenant_tokens(self, tenant: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", f"/api/v1/tenants/{quote(tenant, safe='')}/tokens/revoke"
        )
        return result

    async def create_user(self, *, name: str, password: str, role: str) -> dict[str, Any]:
        body = {"name": name, "password": password, "role": role}
        result: dict[str, Any] = await self._call("POST", "/api/v1/users", json=body)
        return result

    async def users(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self._call("GET", "/api/v1/users"))["items"]
        return items

    async def delete_user(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", f"/api/v1/users/{quote(name, safe='')}")
        return result

    async def audit(
        self, filters: dict[str, str | int | None], *, before_id: int | None = None
    ) -> dict[str, Any]:
        """One page of the audit log, newest first: `{"items", "next"}`; pass `next` as
        `before_id` for the page before. Filters: principal, kind, name, tenant, verb,
        status, outcome, request_id, since, until (ISO 8601), limit."""
        params = {k: v for k, v in filters.items() if v is not None}
        if before_id is not None:
            params["before_id"] = before_id
        result: dict[str, Any] = await self._call("GET", "/api/v1/audit", params=params)
        return result

    async def events(self, filters: dict[str, str | int | None]) -> list[dict[str, Any]]:
        """Inbound webhook events, newest first. Filters: source, tenant, state, limit."""
        params = {k: v for k, v in filters.items() if v is not None}
        result: dict[str, Any] = await self._call("GET", "/api/v1/events", params=params)
        items: list[dict[str, Any]] = result["items"]
        return items

    async def start_agent_run(
        self, tenant: str, *, input: dict[str, Any], component: str | None = None
    ) -> dict[str, Any]:
        """Queue a run of `tenant`'s agent with `input`; the run as queued."""
        body: dict[str, Any] = {"tenant": tenant, "input": input}
        if component is not None:
            body["component"] = component
        result: dict[str, Any] = await self._call("POST", "/api/v1/agents/run", json=body)
        return result

    async def agent_runs(self, filters: dict[str, str | int | None]) -> list[dict[str, Any]]:
        """Agent runs, newest first. Filters: tenant, state, event, limit."""
        params = {k: v for k, v in filters.items() if v is not None}
        result: dict[str, Any] = await self._call("GET", "/api/v1/runs", params=params)
        items: list[dict[str, Any]] = result["items"]
        return items

    async def agent_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/api/v1/runs/{quote(run_id, safe='')}")
        return result

    async def retry_agent_run(self, run_id: str) -> dict[str, Any]:
        """Queue a failed or dead run again."""
        path = f"/api/v1/runs/{quote(run_id, safe='')}/retry"
        result: dict[str, Any] = await self._call("POST", path)
        return result

    async def reveal_secret(self, name: str) -> dict[str, Any]:
        """Secret `name` with its values in clear (admin; the server audits it)."""
        path = f"/api/v1/secrets/{quote(name, safe='')}/reveal"
        result: dict[str, Any] = await self._call("GET", path)
        return result

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
    if status in (502, 503, 504):
        return TemporaryError(detail)
    return ArmillaryError(f"server error {status}: {detail}")
