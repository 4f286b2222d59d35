"""Typed async client of the live channels (`/api/v1/ws`, docs/api.md "Live channels").

One `Live` is one WebSocket: `subscribe(channel, **filters)` sends a subscribe frame
and returns a `Subscription`, an async iterator of that subscription's `Frame`s
(system frames that name it, `subscribed` aside, come through too: an `error` ends
it with `LiveError`). A server message may hold several frames, one a line. The
reader task answers the server's pings and hands each frame to the queue of its
subscription, so several subscriptions share the socket. A closed socket ends every
subscription with `Closed` (its code and reason: 4001 not authenticated, 4008 too
slow).

    async with Live.connect(url, token=token) as live:
        async for frame in live.subscribe("resources", kinds=["Tenant"]):
            print(frame.type, frame.payload)

The CLI's `-w` uses it; it opens no database and imports nothing of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

PATH = "/api/v1/ws"
MAX_FRAME_BYTES = 64 * 1024 * 1024  # a whole document list can be large; the server bounds it


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of the protocol: `{channel, type, id, payload}`."""

    channel: str
    type: str
    id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def resource_version(self) -> str | None:
        """The watch position of a data or `SYNCED` frame (pass it back to resume)."""
        value = self.payload.get("resourceVersion")
        return value if isinstance(value, str) else None


class Closed(Exception):
    """The server closed the socket (or it broke): `code` and `reason` say why."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"the live connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class LiveError(Exception):
    """A system `error` frame for a subscription: `code` (Invalid, Forbidden, Expired,
    Unavailable, SlowConsumer), the server's message and the field it names."""

    def __init__(self, code: str, message: str, field: str | None) -> None:
        where = f" (at {field})" if field else ""
        super().__init__(f"{code}: {message}{where}")
        self.code = code
        self.message = message
        self.field = field


def ws_url(server: str) -> str:
    """The live endpoint of the server at `server` (http(s)://host:port)."""
    base = server.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return base + PATH


def parse(text: str | bytes) -> Frame:
    """A frame from the server's JSON (ValueError if it is not one)."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("channel"), str):
        raise ValueError(f"not a live frame: {str(text)[:200]}")
    payload = data.get("payload") or {}
    ident = data.get("id")
    return Frame(
        channel=data["channel"],
        type=str(data.get("type", "")),
        id=ident if isinstance(ident, str) else None,
        payload=payload if isinstance(payload, dict) else {},
    )


_END = object()


class Subscription:
    """The frames of one subscription, in order; iteration ends on `unsubscribe`,
    raises `LiveError` on its `error` frame and `Closed` when the socket closes."""

    def __init__(self, live: Live, ident: str, channel: str) -> None:
        self.live = live
        self.id = ident
        self.channel = channel
        self._queue: asyncio.Queue[Frame | BaseException | object] = asyncio.Queue()
        self.resource_version: str | None = None  # the last position seen

    def _put(self, item: Frame | BaseException | object) -> None:
        self._queue.put_nowait(item)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Frame:
        item = await self._queue.get()
        if item is _END:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, Frame)
        if item.channel == "system" and item.type == "error":
            self.live._forget(self.id)
            raise LiveError(
                str(item.payload.get("code", "")),
                str(item.payload.get("message", "")),
                item.payload.get("field"),
            )
        if item.resource_version is not None:
            self.resource_version = item.resource_version
        return item

    async def unsubscribe(self) -> None:
        await self.live.unsubscribe(self.id)


class Live:
    """One open live connection; use `Live.connect(...)` as an async context manager."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._subs: dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self.connected: Frame | None = None  # the server's `connected` frame
        self.errors: list[Frame] = []  # system errors that name no subscription

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        server: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        open_timeout_s: float = 10.0,
    ) -> AsyncIterator[Live]:
        """Open the socket to `server` (an http(s) URL or the ws(s) URL itself) and wait
        for the server's `connected` frame; `Closed` if it refuses (4001)."""
        url = server if server.startswith(("ws://", "wss://")) else ws_url(server)
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with websockets.connect(
            url, additional_headers=sent, max_size=MAX_FRAME_BYTES, open_timeout=open_timeout_s
        ) as ws:
            live = cls(ws)
            await live._hello(open_timeout_s)
            live._reader = asyncio.create_task(live._read(), name="live-reader")
            try:
                yield live
            finally:
                live._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await live._reader

    async def _hello(self, timeout_s: float) -> None:
        try:
            text = await asyncio.wait_for(self._ws.recv(), timeout=timeout_s)
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from None
        frame = parse(_lines(text)[0])
        if frame.channel != "system" or frame.type != "connected":
            raise Closed(None, f"expected the connected frame, got {frame.type!r}")
        self.connected = frame

    async def send(self, channel: str, type_: str, ident: str | None, payload: Any = None) -> None:
        frame = {"channel": channel, "type": type_, "id": ident, "payload": payload or {}}
        await self._ws.send(json.dumps(frame, separators=(",", ":")))

    async def subscribe(
        self, channel: str, *, id: str | None = None, **filters: Any
    ) -> Subscription:
        """Subscribe to `channel` with `filters` (its subscribe payload; `None` values
        left out). Python names are sent as the protocol spells them:
        `resource_version` as `resourceVersion`."""
        ident = id or f"s{next(self._ids)}"
        payload = {_wire_name(k): v for k, v in filters.items() if v is not None}
        sub = Subscription(self, ident, channel)
        self._subs[ident] = sub
        await self.send(channel, "subscribe", ident, payload)
        return sub

    async def unsubscribe(self, ident: str) -> None:
        sub = self._subs.get(ident)
        if sub is not None:
            await self.send(sub.channel, "unsubscribe", ident)

    def _forget(self, ident: str) -> None:
        self._subs.pop(ident, None)

    async def _read(self) -> None:
        error: BaseException = Closed(None, "the connection ended")
        try:
            async for message in self._ws:
                for line in _lines(message):
                    await self._dispatch(parse(line))
            error = _closed_now(self._ws)
        except websockets.ConnectionClosed as exc:
            error = _closed(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a frame that is not JSON: nothing more can be trusted
            error = Closed(None, f"unreadable frame: {exc}")
        for sub in self._subs.values():
            sub._put(error)
        self._subs.clear()

    async def _dispatch(self, frame: Frame) -> None:
        if frame.channel == "system":
            if frame.type == "ping":
                await self.send("system", "pong", None)
                return
            if frame.type == "subscribed":
                return
            if frame.type == "unsubscribed" and frame.id in self._subs:
                self._subs.pop(frame.id)._put(_END)
                return
            if frame.type == "error" and frame.id is None:
                self.errors.append(frame)
                return
        sub = self._subs.get(frame.id or "")
        if sub is not None:
            sub._put(frame)

    async def __aenter__(self) -> Live:  # pragma: no cover - connect() is the way in
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await self._ws.close()


def _lines(message: str | bytes) -> list[str]:
    """The frames of one server message: one JSON frame a line."""
    text = message.decode() if isinstance(message, bytes) else message
    return [line for line in text.split("\n") if line]


def _wire_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _closed(exc: websockets.ConnectionClosed) -> Closed:
    received = exc.rcvd
    if received is None:
        return Closed(None, "the connection broke")
    return Closed(received.code, received.reason)


def _closed_now(ws: ClientConnection) -> Closed:
    return Closed(ws.close_code, ws.close_reason or "")
