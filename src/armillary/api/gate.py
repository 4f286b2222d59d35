"""The authentication gate: API requests prove who they are before their body is read.

FastAPI reads and parses a request's body before it runs the route's dependencies,
the `Allow` that authenticates the caller included; without this gate anyone could
make the server read, hold and parse megabytes of JSON only to be told 401. `Gate`
is a pure ASGI middleware, placed before the body limit and before any route: for
every HTTP request under /api/ but the routes anyone may call (`security.PUBLIC`)
it identifies the caller with `security.identify` — the full check: the API key,
tenant token or session looked up in the store, the CSRF token of a session's
mutation — and answers 401 (or 403) itself, without touching the body. The
principal it found is kept in the request's state, so the route's `Allow` reuses it
(one lookup per request, as before) and decides what the caller may do.

Webhook deliveries (`security.SIGNED`) never reach this gate: they prove themselves
by a signature over the body, and are bounded by their source's limits
(api/routes/webhooks.py) and by `limits.BodyGuard`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from armillary.api import problems, security
from armillary.errors import ArmillaryError

GATED_PREFIX = "/api/"


class Gate:
    """ASGI middleware: identify the caller of an API request before anything else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(GATED_PREFIX) or path in security.PUBLIC:
            await self.app(scope, receive, send)
            return
        try:
            # No `receive`: nothing here may read the body.
            await security.identify(Request(scope))
        except ArmillaryError as exc:
            await problems.response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)
