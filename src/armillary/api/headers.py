"""Security headers on every HTTP response.

API answers are data, never documents to render: their Content-Security-Policy
allows nothing, and no page may frame them. The interactive API docs page is the
first HTML page the API serves; its policy allows the Swagger UI assets it loads, all
from this server (api/routes/docs.py), and its inline start-up script. The
dashboard (`/`, `/ui/…`, api/routes/dashboard.py) is stricter: scripts, styles and
connections to this server only, nothing inline, so text a tenant wrote can never
run as script there even if it reached the page as markup.
Responses under /api/ are not cached by browsers or proxies (they may carry
tenant data).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
)
DASHBOARD_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    b"form-action 'none'"
)
COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        csp = _policy(path)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in COMMON if n not in present]
                extra.append((b"content-security-policy", csp))
                if path.startswith("/api/") and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def _policy(path: str) -> bytes:
    if path.startswith("/api/v1/docs"):
        return DOCS_CSP
    if path == "/" or path.startswith("/ui/"):
        return DASHBOARD_CSP
    return API_CSP
