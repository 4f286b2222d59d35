"""Bounds on request bodies: per request, for all requests in flight, and in time.

Two ASGI middlewares, both answering with api/problems.py documents:

- `BodyLimit` (inside the API app, after authentication, see api/gate.py): one
  request's body. A declared Content-Length over the limit is refused at once; a
  chunked body is counted as it streams and cut off at the limit: 413 (`TooLarge`),
  nothing stored. Routes anyone may call (login) get a much smaller limit.
- `BodyGuard` (outermost, around the webhook front door too): the bytes that all
  requests in flight have read, against one `Budget`: a request whose body would pass
  it answers 503 with Retry-After (a `TemporaryError`); a body not received in full
  within `timeout_s` answers 408 (`TimedOut`). Both start when the application first
  asks for the body (until then the server reads at most one socket buffer of it,
  then stops reading), so a request answered without reading its body (a 401) never
  takes from the budget, and time the server spends before reading is not counted
  against the client. A body with a declared length takes all of it at once, so a
  request that got in is never cut off halfway by others. The 408 closes the
  connection (`Connection: close`).

An answer sent before the body was read (a 401, a 413, this 503) leaves the rest of
the body to uvicorn, which reads and drops it without keeping it, so the client
reads its answer and may use the connection again; the connection's header deadline
(api/connections.py), armed when the answer is sent, bounds how long that may take.
Closing at once instead would reset a connection with unread data, and the client
could lose the answer.

`BodyLimit` answers itself, and drops what the application sends after; `BodyGuard`,
which sits outside the API's layers, raises its refusal to the reader of the body
(`problems.Refused`), so that the answer is made inside, as any error is, and
answers it itself only if the application let it out unanswered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import NoReturn

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armillary.api import audit, headers, problems
from armillary.errors import ArmillaryError, Issue, TemporaryError, TimedOut, TooLarge

log = logging.getLogger("armillary.api")

PUBLIC_MAX_BODY_BYTES = 16 * 1024
"""The body limit of the routes anyone may call: a login is a user name and a password."""

BUDGET_RETRY_S = 1.0
DISCONNECT: Message = {"type": "http.disconnect"}


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        public: Collection[str] = (),
        public_max_bytes: int = PUBLIC_MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.public = frozenset(public)
        self.public_max_bytes = min(public_max_bytes, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        public = scope["path"] in self.public
        max_bytes = self.public_max_bytes if public else self.max_bytes
        declared = content_length(scope)
        if declared is not None and declared > max_bytes:
            await problems.response(_too_large(declared, max_bytes, public=public))(
                scope, receive, send
            )
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            # Past the limit: answer 413 ourselves, then tell the app the client left,
            # and drop whatever it tries to send after that.
            nonlocal seen, refused
            if refused:
                return DISCONNECT
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    refused = True
                    await problems.response(_too_large(seen, max_bytes, public=public))(
                        scope, receive, send
                    )
                    return DISCONNECT
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not refused:
                raise
            # Refused mid-body: the app's complaint about the vanished body is expected.


class Budget:
    """Bytes of request bodies held by the requests in flight, against `max_bytes`."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held_bytes = 0

    def take(self, size: int) -> bool:
        """Hold `size` more bytes if that stays within the budget; False if not."""
        if self.held_bytes + size > self.max_bytes:
            return False
        self.held_bytes += size
        return True

    def give_back(self, size: int) -> None:
        self.held_bytes -= size


class BodyGuard:
    """ASGI middleware bounding every request's body by `budget` and `timeout_s`."""

    def __init__(self, app: ASGIApp, *, budget: Budget, timeout_s: float) -> None:
        self.app = app
        self.budget = budget
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        await _Body(self, scope, receive, send).run()


class _Body:
    """One request with a body, as `BodyGuard` watches it."""

    def __init__(self, guard: BodyGuard, scope: Scope, receive: Receive, send: Send) -> None:
        self.guard = guard
        self.scope = scope
        self._receive = receive
        self._send = send
        self.declared = content_length(scope)
        self.deadline: float | None = None  # set when the app first asks for the body
        self.held_bytes = 0
        self.complete = False  # the whole body was received
        self.started = False  # a response has started
        self.refusal: ArmillaryError | None = None

    async def run(self) -> None:
        try:
            await self.guard.app(self.scope, self.receive, self.send)
        except Exception:
            if self.refusal is None or self.started:
                raise
            # The app let the refusal out unanswered: answer it here.
            log.debug("body refused, the app did not answer", exc_info=True)
            self.started = True
            close = isinstance(self.refusal, TimedOut)
            await _refuse(self.scope, self._receive, self._send, self.refusal, close=close)
        finally:
            self.guard.budget.give_back(self.held_bytes)

    async def receive(self) -> Message:
        if self.refusal is not None:
            return DISCONNECT
        if self.complete:  # only the disconnect is left to wait for: no deadline
            return await self._receive()
        if self.deadline is None:
            self.deadline = asyncio.get_running_loop().time() + self.guard.timeout_s
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            limit = f"{self.guard.timeout_s:g}"
            self.refuse(TimedOut(f"the request body did not arrive within {limit}s"))
        if message["type"] != "http.request":
            self.complete = True
            return message
        if not self._hold(len(message.get("body", b""))):
            held, budget = self.guard.budget.held_bytes, self.guard.budget.max_bytes
            self.refuse(
                TemporaryError(
                    f"the server holds {held} bytes of request bodies, its budget is "
                    f"{budget} (ARMILLARY_MAX_BODY_BYTES_IN_FLIGHT); retry after "
                    f"{BUDGET_RETRY_S:g}s",
                    delay_s=BUDGET_RETRY_S,
                )
            )
        if not message.get("more_body", False):
            self.complete = True
        return message

    def _hold(self, size: int) -> bool:
        """Take this chunk's bytes from the budget (a declared length: all of it, once)."""
        if self.declared is not None:
            size = 0 if self.held_bytes else self.declared
        if size == 0 or self.guard.budget.take(size):
            self.held_bytes += size
            return True
        return False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            if isinstance(self.refusal, TimedOut):
                message = {**message, "headers": _closing(message.get("headers", []))}
        await self._send(message)

    def refuse(self, exc: ArmillaryError) -> NoReturn:
        """Raise `exc` to whoever reads the body, as `problems.Refused`: FastAPI turns
        any other exception met while reading a body into a 400 of its own, but lets
        an HTTPException through to the app's handlers, which answer `exc` through
        every layer (the audit log, request id and security headers included). A
        reader asking again is told the client left."""
        self.refusal = exc
        raise problems.Refused(exc)


def content_length(scope: Scope) -> int | None:
    """The request's declared Content-Length, if it has a valid one."""
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return bool(value != b"0")
        if name == b"transfer-encoding":
            return True
    return False


def _closing(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    kept = [(n, v) for n, v in raw if n.lower() != b"connection"]
    return [*kept, (b"connection", b"close")]


def _too_large(size: int, max_bytes: int, *, public: bool) -> TooLarge:
    setting = "for the routes anyone may call" if public else "ARMILLARY_MAX_BODY_BYTES"
    message = f"request body is {size} bytes or more; the limit is {max_bytes} ({setting})"
    return TooLarge([Issue(path="body", message=message)])


async def _refuse(
    scope: Scope, receive: Receive, send: Send, exc: ArmillaryError, *, close: bool
) -> None:
    """Answer `exc` as a problem document, with the headers the layers inside would
    have added (this answer goes round them); `close`: and close the connection."""
    request_id = audit.CURRENT_REQUEST.get()  # set by whichever door the request took

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            raw = [*message.get("headers", []), *headers.COMMON]
            raw.append((b"content-security-policy", headers.API_CSP))
            if request_id is not None:
                raw.append((audit.HEADER, request_id.encode()))
            message = {**message, "headers": _closing(raw) if close else raw}
        await send(message)

    await problems.response(exc)(scope, receive, closing)
