"""Typed HTTP client of the Armillary API, used by the CLI (and later the node daemon).

One async class: the CLI drives it with `asyncio.run` at its edge. Error responses
(application/problem+json) come back as the matching `armillary.errors` exception,
with the per-place issues of a 4xx kept, so callers print the same messages the
server wrote.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from armillary.errors import (
    ArmillaryError,
    Conflict,
    Forbidden,
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
