"""`Measure`: the outermost ASGI layer, counting every HTTP request and its duration
by route *template* (`/api/v1/tenants/{name}`, never the path a caller typed: the
label stays bounded) and status class.

It wraps the webhook front door too (`webhooks.Front` answers deliveries before
FastAPI's routing, so no route is matched for them: their template is named here),
and `limits.BodyGuard`, so a body refused for time or size is counted like any
answer. A path no route matched is counted under `other`.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armillary import metrics

WEBHOOK_ROUTE = "/webhooks/{source}"
UNMATCHED = "other"


class Measure:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # an app that raised before answering answers 500 (the server's)

        async def measured_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, measured_send)
        finally:
            route = _template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            metrics.HTTP_REQUESTS.labels(method, route, metrics.status_class(status)).inc()
            metrics.HTTP_DURATION.labels(method, route).observe(time.perf_counter() - began)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _template(scope: Scope) -> str:
    """The matched route's path template; the webhook door's; or `other`."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope.get("path", "").startswith("/webhooks/"):
        return WEBHOOK_ROUTE
    return UNMATCHED
