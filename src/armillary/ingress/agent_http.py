"""The run worker's HTTP client: one POST of a JSON body, on kept-alive connections.

Used by the agent run worker (ingress/runner.py) for its calls to tenants' agents,
`http://<node address>:<port>/run`, instead of httpx: at a thousand runs a second
httpx's request machinery (its connection pool scans every connection for every
request) cost more CPU than everything else of a run together (docs/performance.md).
What an agent call needs is small: HTTP/1.1, plain http on the cluster's network, one
POST with Content-Length, an answer with Content-Length, chunked or ended by closing,
of which only the first `max_bytes` are kept.

Invariants: a connection goes back to the pool only after an answer was read whole
and neither side asked to close; anything else (an error, a cancellation or timeout
of the caller, an answer longer than `max_bytes`) closes it. A call that fails on a
kept-alive connection before a byte of the answer arrived (the agent closed it while
idle) is sent once more on a new connection; agents get an Idempotency-Key and
delivery is at least once anyway. Nothing is taken from the environment (no proxies).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

HEAD_MAX_BYTES = 64 * 1024  # the status line and headers of an answer, at most


class CallError(Exception):
    """The call could not be made or its answer not be read: what went wrong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """An answer's status and the first `max_bytes` of its body."""

    status: int
    body: bytes


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()


class Client:
    """Kept-alive connections per (host, port), at most `keep` idle per address."""

    def __init__(self, *, keep: int) -> None:
        self._keep = keep
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def post(
        self, url: str, body: bytes, *, headers: Mapping[str, str], max_bytes: int
    ) -> Answer:
        """POST `body` (JSON) to `url` with `headers`; the answer, its body clipped."""
        host, port, target = _split(url)
        request = _request(host, port, target, body, headers)
        while True:
            conn, reused = self._take(host, port), True
            if conn is None:
                conn, reused = await _connect(host, port), False
            try:
                answer, keep = await _exchange(conn, request, max_bytes=max_bytes)
            except _Stale:
                conn.close()
                if reused:
                    continue  # the agent closed it while idle: once more on a new one
                raise CallError("the connection closed before an answer") from None
            except BaseException:
                conn.close()
                raise
            if keep:
                self._put(host, port, conn)
            else:
                conn.close()
            return answer

    def _take(self, host: str, port: int) -> _Connection | None:
        idle = self._idle.get((host, port))
        while idle:
            conn = idle.pop()
            if not conn.writer.is_closing() and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    def _put(self, host: str, port: int, conn: _Connection) -> None:
        idle = self._idle.setdefault((host, port), [])
        if len(idle) < self._keep:
            idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
                with contextlib.suppress(OSError):
                    await conn.writer.wait_closed()


class _Stale(Exception):
    """The connection ended before any byte of the answer."""


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise CallError(f"expected an http:// URL with a host, got {url!r}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.hostname, parts.port or 80, target


def _request(host: str, port: int, target: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _connect(host: str, port: int) -> _Connection:
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=HEAD_MAX_BYTES)
    except OSError as exc:
        raise CallError(f"connecting to {host}:{port} failed: {exc}") from exc
    return _Connection(reader, writer)


async def _exchange(conn: _Connection, request: bytes, *, max_bytes: int) -> tuple[Answer, bool]:
    """Send `request`, read the answer; whether the connection can be used again."""
    try:
        conn.writer.write(request)
        await conn.writer.drain()
        head = await conn.reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _Stale from exc
        raise CallError("the answer ended inside its headers") from exc
    except (ConnectionResetError, BrokenPipeError) as exc:
        raise _Stale from exc
    except asyncio.LimitOverrunError as exc:
        raise CallError(f"the answer's headers are longer than {HEAD_MAX_BYTES} bytes") from exc
    except OSError as exc:
        raise CallError(f"sending the call failed: {exc}") from exc
    status, version, fields = _head(head)
    try:
        body, whole = await _body(conn.reader, fields, max_bytes=max_bytes)
    except (asyncio.IncompleteReadError, OSError, ValueError) as exc:
        raise CallError(f"reading the answer failed: {type(exc).__name__}") from exc
    keep = whole and version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
    keep = keep and ("content-length" in fields or "chunked" in fields.get("transfer-encoding", ""))
    return Answer(status=status, body=body), keep


def _head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """The status, the HTTP version and the header fields (lowercase names)."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    try:
        status = int(rest[:3])
    except ValueError:
        raise CallError(f"not an HTTP answer: {lines[0][:80]!r}") from None
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return status, version, fields


async def _body(
    reader: asyncio.StreamReader, fields: Mapping[str, str], *, max_bytes: int
) -> tuple[bytes, bool]:
    """The first `max_bytes` of the body, and whether it was read to its end."""
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return await _chunked(reader, max_bytes=max_bytes)
    if "content-length" in fields:
        length = int(fields["content-length"])
        if length > max_bytes:
            return await reader.readexactly(max_bytes), False
        return await reader.readexactly(length), True
    body = bytearray()  # ended by closing the connection
    while len(body) < max_bytes and (chunk := await reader.read(max_bytes - len(body))):
        body += chunk
    return bytes(body), False


async def _chunked(reader: asyncio.StreamReader, *, max_bytes: int) -> tuple[bytes, bool]:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return bytes(body), True
        if len(body) + size > max_bytes:
            body += await reader.readexactly(max_bytes - len(body))
            return bytes(body), False
        body += await reader.readexactly(size)
        await reader.readexactly(2)
