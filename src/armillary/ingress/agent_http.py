"""The run worker's HTTP client: one POST of a JSON body, on kept-alive connections.

Used by the agent run worker (ingress/runner.py) for its calls to tenants' agents,
`http://<node address>:<port>/run`. It is aiohttp's client (a `ClientSession` on a
`TCPConnector`, answers read by aiohttp's C parser) behind the small interface the
worker needs; httpx stays the API's client elsewhere, but at a thousand calls a second
its connection pool cost more CPU than the rest of a run together (docs/performance.md,
docs/architecture.md).

Invariants: at most `keep` connections are open (the worker's limit on calls in
flight), idle ones kept alive for reuse. Of an answer only the first `max_bytes` are
kept; the rest is not waited for: unless aiohttp's buffer (64 KiB) already held the
answer's end, its connection is closed. A connection goes back to the pool only after
its answer arrived whole and neither side asked to close; an error, or a cancellation
or timeout of the caller, closes it. A call whose connection ended before the
answer's head arrived (the agent closed a kept-alive connection while it was idle) is
sent once more, on another connection; agents get an Idempotency-Key and delivery is
at least once anyway. Only `http://` URLs; nothing is taken from the environment (no
proxies, no .netrc), no redirects are followed, no compression is asked for. The
client sets no deadline of its own: the caller bounds the whole exchange
(`asyncio.timeout`), and a cancelled call leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

IDLE_KEEP_S = 4.0  # under the common servers' keep-alive (uvicorn and Node.js: 5 s)
_NO_DEADLINE = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None)


class CallError(Exception):
    """The call could not be made or its answer not be read: what went wrong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """An answer's status and the first `max_bytes` of its body."""

    status: int
    body: bytes


class Client:
    """At most `keep` connections open at once, kept alive per (host, port).

    Made inside a running event loop, and closed with `aclose` on the same loop."""

    def __init__(self, *, keep: int) -> None:
        connector = aiohttp.TCPConnector(limit=keep, keepalive_timeout=IDLE_KEEP_S)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=_NO_DEADLINE,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
            trust_env=False,
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # an agent's cookies are not kept
        )

    async def post(
        self, url: str, body: bytes, *, headers: Mapping[str, str], max_bytes: int
    ) -> Answer:
        """POST `body` (JSON) to `url` with `headers`; the answer, its body clipped."""
        if not url.startswith("http://"):
            raise CallError(f"expected an http:// URL with a host, got {url!r}")
        sent = {"Content-Type": "application/json", **headers}
        try:
            try:
                return await self._exchange(url, body, sent, max_bytes=max_bytes)
            except _Stale:
                # the agent closed it while idle: once more, which takes a new one
                return await self._exchange(url, body, sent, max_bytes=max_bytes)
        except _Stale as exc:
            raise CallError(f"the connection closed before an answer: {exc}") from None
        except aiohttp.InvalidURL as exc:
            raise CallError(f"expected an http:// URL with a host, got {url!r}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise CallError(f"connecting to {exc.host}:{exc.port} failed: {exc.os_error}") from exc
        except aiohttp.ClientResponseError as exc:  # a head that is not HTTP
            raise CallError(f"not an HTTP answer: {exc.message}") from exc
        except aiohttp.ClientPayloadError as exc:
            raise CallError(f"reading the answer failed: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise CallError(f"the call failed: {type(exc).__name__}: {exc}") from exc

    async def _exchange(
        self, url: str, body: bytes, headers: Mapping[str, str], *, max_bytes: int
    ) -> Answer:
        try:
            response = await self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            )
        except aiohttp.ClientConnectorError:
            raise  # a new connection failed: nothing was sent, nothing to send again
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise _Stale(str(exc) or type(exc).__name__) from exc
        try:
            length = response.content_length
            if length is not None and length <= max_bytes:
                return Answer(status=response.status, body=await response.read())
            content = response.content
            kept = bytearray()
            while len(kept) < max_bytes and (chunk := await content.read(max_bytes - len(kept))):
                kept += chunk
            if content.at_eof():
                response.release()  # read whole: the connection may be used again
            else:
                response.close()  # longer than max_bytes: the rest is not read
        except BaseException:
            response.close()
            raise
        return Answer(status=response.status, body=bytes(kept))

    async def aclose(self) -> None:
        """Close every connection."""
        await self._session.close()


class _Stale(Exception):
    """The connection ended before the answer's head."""
