"""Request body size limit, enforced before the body is read into memory.

A declared Content-Length over the limit is refused at once; a chunked body is
counted as it streams and cut off at the limit. Either way: 413 (a `TooLarge` problem
document, built by api/problems.py like every other error), nothing stored.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armillary.api import problems
from armillary.errors import Issue, TooLarge


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(scope, receive, send, int(value))
                return
        seen = 0
        refused = False

        async def counted() -> Message:
            # Past the limit: answer 413 ourselves, then tell the app the client left,
            # and drop whatever it tries to send after that.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    await self._refuse(scope, receive, send, seen)
                    return {"type": "http.disconnect"}
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

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        message = f"request body is {size} bytes or more; the limit is {self.max_bytes}"
        answer = problems.response(TooLarge([Issue(path="body", message=message)]))
        await answer(scope, receive, send)
