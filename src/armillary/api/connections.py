"""HTTP/1.1 connections of the server: uvicorn's, with a deadline on request headers.

uvicorn closes a connection idle after an answer (`timeout_keep_alive`), but not
one that opens and sends nothing, nor one that sends part of a request's headers
and stalls (each byte received even cancels the keep-alive timer): hundreds of such
connections stay open for good. `protocol(header_timeout_s=…)` is the protocol
class `armillary server` runs (main.py): from the moment a connection opens, and
again each time an answer has been sent on it, the next request's headers must have
arrived within `header_timeout_s`, or the connection is closed. A request's body is
bounded in time by `limits.BodyGuard`, which can still answer 408.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderDeadline(HttpToolsProtocol):
    """`HttpToolsProtocol` closing connections whose request headers are late."""

    header_timeout_s: ClassVar[float] = 15.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # the next request's headers are already here
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol(*, header_timeout_s: float) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `http=`, with this header deadline."""
    return type("Connection", (HeaderDeadline,), {"header_timeout_s": header_timeout_s})
