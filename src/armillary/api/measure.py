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

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armillary import metrics

WEBHOOK_ROUTE = "/webhooks/{source}"
UNMATCHED = "other"


class Measure:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The labelled children, looked up once per combination: `labels()` builds and
        # checks its key under a lock each time, on the path of every delivery.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

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
            elapsed = time.perf_counter() - began
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            key = (method, _template(scope), status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    metrics.HTTP_REQUESTS.labels(method, key[1], metrics.status_class(status)),
                    metrics.HTTP_DURATION.labels(method, key[1]),
                )
            children[0].inc()
            children[1].observe(elapsed)


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
