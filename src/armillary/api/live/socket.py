"""One live WebSocket (`/api/v1/ws`): who calls, its subscriptions, and what it is sent.

The handshake is authenticated as any request (`security.authenticate`): a bearer
token, or the session cookie from a page of this server (`Origin` checked: another
site's page cannot borrow the visitor's cookie). A caller that is not authenticated
is closed with 4001; so is one whose credential is refused later
(`security.until_refused`, as for followed logs).

Backpressure: frames for the client go into one queue that never blocks the one who
offers them (the hub, for every client at once). A writer task sends what is queued,
several frames a message. The frames of live changes count against
`ARMILLARY_WS_QUEUE`; a client that lets them pile up to it is too slow: it is sent
`SlowConsumer` (best effort, with a deadline) and closed with 4008, and the hub never
waited for it. What a subscription starts with (its present state, bounded by what
the server holds anyway) is queued without counting, so a large listing is not taken
for a slow reader. Every frame, counted or not (listings, errors, confirmations,
pings), counts against `ARMILLARY_WS_QUEUE_BYTES`: past it the client is a slow
consumer too, so what a socket holds is bounded whatever it asks for. While half of
that waits, the client's own frames are not read (TCP pushes back on it), and its
`subscribe` frames are paced (`SUBSCRIBE_RATE`), so asking again and again for a
listing it never reads costs it, not the server.

Log streams are per subscription: one node stream per replica, through the node hub
(the same relay as `GET /replicas/{id}/logs?follow=true`), each chunk cut into lines
of at most `LINE_CHARS` (a longer one is cut and marked `truncated`). A chunk counts
as one frame against `ARMILLARY_WS_QUEUE` however many lines it holds (a long tail is
not taken for a slow reader); its characters count against the byte budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from fastapi import WebSocket, WebSocketDisconnect

from armillary import __version__, protocol
from armillary.api import security
from armillary.api.hub import Hub
from armillary.api.live import frames
from armillary.api.live.frames import Error, Spec
from armillary.api.live.hub import LiveHub, Subscription
from armillary.auth import access, sessions
from armillary.config import Settings
from armillary.errors import Forbidden, NotFound, Unauthorized
from armillary.store import allocations

log = logging.getLogger("armillary.api.live")

MESSAGE_CHARS = 256 * 1024
"""A message gathers queued frames up to about this size."""
LINE_CHARS = 16 * 1024
"""A log line longer than this is cut (and marked `truncated`): what waits for the
end of a line is bounded."""
SUBSCRIBE_RATE = 20.0
"""`subscribe` frames a socket may send a second, sustained (`SUBSCRIBE_BURST` at once);
beyond, the socket's frames wait (they are not refused)."""
SUBSCRIBE_BURST = 50
CLOSE_INTERNAL = 1011
CLOSE_DEADLINE_S = 2.0
"""How long closing a client refused at the handshake may take."""
CLOSE_GRACE_S = 60.0
"""How long a client being closed has to read what was sent before (its last frames,
the error, the close frame) before the connection is dropped: a slow consumer that
reads again learns why it was closed. What it holds meanwhile is what was already
written for it (the socket's buffers), nothing more."""


async def serve(websocket: WebSocket) -> None:
    """Run one live socket until the client leaves or is closed."""
    settings: Settings = websocket.app.state.settings
    await websocket.accept()
    try:
        who = await _admit(websocket, settings)
    except (Unauthorized, Forbidden) as exc:
        await _close(websocket, frames.CLOSE_UNAUTHENTICATED, str(exc))
        return
    websocket.state.principal = who
    client = Client(websocket, who=who, settings=settings)
    await client.run()


async def _admit(websocket: WebSocket, settings: Settings) -> access.Principal:
    cookie_only = "authorization" not in websocket.headers and sessions.COOKIE in websocket.cookies
    if cookie_only and not _same_origin(websocket, settings):
        origin = websocket.headers.get("origin")
        raise Unauthorized(f"Origin {origin!r} is not this server's: a session works only here")
    who = await security.authenticate(websocket)
    if who.role == "node":
        raise Unauthorized("a node's key may only connect a node daemon")
    return who


def _same_origin(websocket: WebSocket, settings: Settings) -> bool:
    """Whether the handshake comes from a page of this server (or an allowed origin).
    No `Origin` at all: not a browser, which always sends one on a WebSocket."""
    origin = websocket.headers.get("origin")
    if origin is None or origin in settings.cors_origins:
        return True
    return urlsplit(origin).netloc.lower() == websocket.headers.get("host", "").lower()


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason[:120]), CLOSE_DEADLINE_S)


class Client:
    def __init__(self, websocket: WebSocket, *, who: access.Principal, settings: Settings) -> None:
        self._ws = websocket
        self._who = who
        self._settings = settings
        self._live: LiveHub = websocket.app.state.live
        self._nodes: Hub = websocket.app.state.hub
        self._queue: deque[tuple[str, bool]] = deque()
        self._counted = 0
        self._limit = settings.ws_queue
        self._bytes = 0
        self._budget = settings.ws_queue_bytes
        self._room = asyncio.Event()
        self._room.set()
        self._bucket = Bucket(SUBSCRIBE_RATE, SUBSCRIBE_BURST)
        self._ready = asyncio.Event()
        self._ended = asyncio.Event()
        self._end: tuple[int, str, Error | None] | None = None
        self._subs: dict[str, Subscription] = {}
        self._logs: dict[str, asyncio.Task[None]] = {}
        self._pong = asyncio.Event()
        self._ping_text = frames.frame("system", "ping", None, {})
        self._ping_written = asyncio.Event()

    # --- what the hub calls

    def offer(self, text: str, *, counted: bool = True) -> None:
        if self._end is not None:
            return
        too_much = overflow(
            frames=self._counted + counted,
            limit=self._limit,
            chars=self._bytes + len(text),
            budget=self._budget,
        )
        if too_much is not None:
            self._finish(frames.CLOSE_SLOW, "slow consumer", Error("SlowConsumer", too_much))
            return
        self._counted += counted
        self._bytes += len(text)
        if self._bytes > self._budget // 2:
            self._room.clear()
        self._queue.append((text, counted))
        self._ready.set()

    def _finish(self, code: int, reason: str, error: Error | None = None) -> None:
        if self._end is None:
            self._end = (code, reason, error)
            self._queue.clear()
            self._counted = 0
            self._bytes = 0
            self._room.set()
            self._ended.set()

    # --- the socket's life

    async def run(self) -> None:
        who = self._who
        hello = {
            "server": self._settings.replica_name(),
            "version": __version__,
            "who": {"kind": who.kind, "id": who.id, "role": who.role, "tenant": who.tenant},
        }
        self.offer(frames.frame("system", "connected", None, hello), counted=False)
        tasks = [
            asyncio.create_task(self._write(), name="live-writer"),
            asyncio.create_task(self._read(), name="live-reader"),
            asyncio.create_task(self._ping(), name="live-ping"),
            asyncio.create_task(self._recheck(), name="live-recheck"),
        ]
        ended = asyncio.create_task(self._ended.wait())
        try:
            done, _ = await asyncio.wait([*tasks, ended], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not ended and not task.cancelled() and task.exception() is not None:
                    log.error("live: %s failed", task.get_name(), exc_info=task.exception())
                    failed = Error("Unavailable", "the server failed serving this socket")
                    self._finish(CLOSE_INTERNAL, "internal error", failed)
        finally:
            for task in [*tasks, ended, *self._logs.values()]:
                task.cancel()
            await asyncio.gather(*tasks, ended, *self._logs.values(), return_exceptions=True)
            for sub in self._subs.values():
                self._live.unsubscribe(sub)
            self._subs.clear()
        if self._end is not None:
            code, reason, error = self._end
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._last_words(code, reason, error), CLOSE_GRACE_S)

    async def _last_words(self, code: int, reason: str, error: Error | None) -> None:
        """The error, then the close: they wait behind what the client has not read
        yet, for at most `CLOSE_GRACE_S`; then the connection is dropped."""
        if error is not None:
            await self._ws.send_text(frames.error_frame(error, None))
        await self._ws.close(code, reason[:120])

    async def _write(self) -> None:
        queue = self._queue
        while True:
            await self._ready.wait()
            batch: list[str] = []
            size = 0
            while queue and size < MESSAGE_CHARS:
                text, counted = queue.popleft()
                self._counted -= counted
                batch.append(text)
                size += len(text)
            if not queue:
                self._ready.clear()
            if batch:
                await self._ws.send_text("\n".join(batch))
                if self._end is None:
                    self._bytes -= size
                    if self._bytes <= self._budget // 2:
                        self._room.set()
                if any(text is self._ping_text for text in batch):
                    self._ping_written.set()

    async def _read(self) -> None:
        try:
            while True:
                await self._room.wait()  # over half the budget waits: read nothing more
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    return  # the client left
                try:
                    text = message.get("text")
                    if text is None:
                        raise Error("Invalid", "expected a text message holding one JSON frame")
                    request = frames.read(text)
                    if request.type == "subscribe":
                        await asyncio.sleep(self._bucket.take(time.monotonic()))
                    await self._handle(request)
                except Error as exc:
                    self.offer(frames.error_frame(exc, None), counted=False)
        except (WebSocketDisconnect, RuntimeError):
            return  # the client left

    async def _ping(self) -> None:
        """The pong is awaited from when the ping was written, not queued: a ping
        behind a large listing on a slow link is not taken for a dead client (a
        client that reads nothing at all is bounded by the queue, not by this)."""
        while True:
            await asyncio.sleep(self._settings.ws_ping_s)
            self._pong.clear()
            self._ping_written.clear()
            self.offer(self._ping_text, counted=False)
            try:
                await asyncio.wait_for(self._ping_written.wait(), CLOSE_GRACE_S)
            except TimeoutError:
                self._finish(frames.CLOSE_PONG, "the ping was never read")
                return
            try:
                await asyncio.wait_for(self._pong.wait(), self._settings.ws_pong_s)
            except TimeoutError:
                self._finish(frames.CLOSE_PONG, "no pong")
                return

    async def _recheck(self) -> None:
        why = await security.until_refused(self._ws, recheck_s=self._settings.stream_recheck_s)
        self._finish(frames.CLOSE_UNAUTHENTICATED, why)

    # --- the client's frames

    async def _handle(self, request: frames.Request) -> None:
        if request.channel == "system":
            if request.type == "pong":
                self._pong.set()
                return
            raise Error("Invalid", "expected 'pong' on the system channel", field="type")
        if request.type == "subscribe":
            await self._subscribe(request)
        elif request.type == "unsubscribe":
            self._unsubscribe(request)
        else:
            raise Error("Invalid", "expected 'subscribe' or 'unsubscribe'", field="type")

    async def _subscribe(self, request: frames.Request) -> None:
        ident = request.id
        try:
            if ident is None:
                raise Error("Invalid", "a subscription needs an id", field="id")
            if ident in self._subs or ident in self._logs:
                raise Error("Invalid", f"subscription {ident!r} is already open", field="id")
            if len(self._subs) + len(self._logs) >= frames.MAX_SUBSCRIPTIONS:
                raise Error("Invalid", f"at most {frames.MAX_SUBSCRIPTIONS} subscriptions a socket")
            spec = frames.spec(request, self._who)
            subscribed = frames.frame("system", "subscribed", ident, {"channel": spec.channel})
            if spec.logs is not None:
                await self._follow(ident, spec, subscribed)
                return
            sub = Subscription(id=ident, spec=spec, client=self)
            await self._live.subscribe(sub, subscribed=subscribed)
            self._subs[ident] = sub
        except Error as exc:
            self.offer(frames.error_frame(exc, ident), counted=False)
        except Exception:  # the store did not answer: this subscription fails, not the socket
            log.warning("live: a subscription could not be made", exc_info=True)
            error = Error("Unavailable", "the store could not be read; subscribe again")
            self.offer(frames.error_frame(error, ident), counted=False)

    def _unsubscribe(self, request: frames.Request) -> None:
        ident = request.id
        sub = self._subs.pop(ident or "", None)
        task = self._logs.pop(ident or "", None)
        if sub is None and task is None:
            raise Error("Invalid", f"no open subscription {ident!r}", field="id")
        if sub is not None:
            self._live.unsubscribe(sub)
        if task is not None:
            task.cancel()
        self.offer(frames.frame("system", "unsubscribed", ident, {}), counted=False)

    # --- logs

    async def _follow(self, ident: str, spec: Spec, subscribed: str) -> None:
        wanted = spec.logs
        assert wanted is not None
        db = self._live_db()
        async with db.read() as conn:
            held = await allocations.for_tenant(conn, wanted.tenant)
        chosen = [
            a for a in held if a.component == wanted.component and wanted.replica in (None, a.id)
        ]
        if wanted.replica is not None and not chosen:
            raise Error(
                "Invalid",
                f"no replica {wanted.replica!r} of {wanted.tenant}/{wanted.component}",
                field="payload.replica",
            )
        relays = []
        for allocation in sorted(chosen, key=lambda a: a.replica):
            try:
                relays.append((allocation.id, self._nodes.session(allocation.node)))
            except NotFound:
                raise Error(
                    "Unavailable",
                    f"replica {allocation.id}'s node {allocation.node!r} is not connected "
                    "to this server",
                ) from None
        self.offer(subscribed, counted=False)
        task = asyncio.create_task(self._relay_all(ident, spec, relays), name="live-logs")
        self._logs[ident] = task
        task.add_done_callback(lambda done: self._relay_done(ident, done))

    def _relay_done(self, ident: str, task: asyncio.Task[None]) -> None:
        """A finished log relay leaves the socket's subscriptions (its id is free
        again); one that failed is said in the log and to the client."""
        if self._logs.get(ident) is task:
            del self._logs[ident]
        if not task.cancelled() and task.exception() is not None:
            log.warning("live: a log relay failed", exc_info=task.exception())
            error = Error("Unavailable", "the log stream failed; subscribe again")
            self.offer(frames.error_frame(error, ident), counted=False)

    def _live_db(self) -> Any:
        return self._ws.app.state.db

    async def _relay_all(self, ident: str, spec: Spec, relays: list[tuple[str, Any]]) -> None:
        async with asyncio.TaskGroup() as group:
            for replica, session in relays:
                group.create_task(self._relay(ident, spec, replica, session))

    async def _relay(self, ident: str, spec: Spec, replica: str, session: Any) -> None:
        wanted = spec.logs
        assert wanted is not None
        id_text = frames.dumps(ident)
        stream, queue = session.open_stream()
        error: str | None = None
        rest = ""
        try:
            opening = protocol.LogsOpen(
                stream=stream,
                allocation=replica,
                follow=True,
                tail=wanted.tail,
                since_s=wanted.since_s,
                timestamps=True,
            )
            await session.send("logs.open", protocol.encode(opening))
            while (chunk := await queue.get()) is not None:
                if chunk.get("error"):
                    error = str(chunk["error"])
                    break
                lines, rest = split_lines(rest, str(chunk.get("data") or ""), LINE_CHARS)
                for i, (line, cut) in enumerate(lines):
                    payload = frames.dumps({"replica": replica, **_stamped(line, cut)})
                    # one chunk, one frame against the count (its characters all count)
                    self.offer(frames.data_frame("logs", "line", id_text, payload), counted=i == 0)
        except Exception as exc:  # the node went away
            error = f"the stream ended: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await session.close_stream(stream)
        if rest:
            payload = frames.dumps({"replica": replica, **_stamped(rest, False)})
            self.offer(frames.data_frame("logs", "line", id_text, payload))
        end: dict[str, Any] = {"replica": replica}
        if error:
            end["error"] = error
        self.offer(frames.data_frame("logs", "end", id_text, frames.dumps(end)), counted=False)


def overflow(*, frames: int, limit: int, chars: int, budget: int) -> str | None:
    """Why a client whose queue would hold `frames` counted frames and `chars`
    characters is a slow consumer; None while it is not."""
    if frames > limit:
        return f"more than {limit} frames waited to be sent: read faster"
    if chars > budget:
        return f"more than {budget} characters waited to be sent: read faster"
    return None


class Bucket:
    """A token bucket: `take(now)` is how long to wait before the next frame may go."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at: float | None = None

    def take(self, now: float) -> float:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def split_lines(rest: str, data: str, limit: int) -> tuple[list[tuple[str, bool]], str]:
    """The whole lines in `rest + data` (each with whether it was cut at `limit`
    characters) and what is left for the next chunk (shorter than `limit`): a line
    without its end is never held whole, and `data` is scanned once."""
    text = rest + data
    parts = text.split("\n")
    tail = parts.pop()
    lines: list[tuple[str, bool]] = [(p[:limit], len(p) > limit) for p in parts]
    while len(tail) >= limit:
        lines.append((tail[:limit], True))
        tail = tail[limit:]
    return lines, tail


def _stamped(line: str, cut: bool) -> dict[str, Any]:
    """A line the node stamped (`<RFC 3339> <text>`) as `at` and `line`; `truncated`
    when it was cut at `LINE_CHARS`."""
    head, space, text = line.partition(" ")
    stamped: dict[str, Any] = {"line": line, "at": None}
    if space and len(head) >= 20 and head[4:5] == "-" and head[10:11] == "T":
        stamped = {"line": text, "at": head}
    if cut:
        stamped["truncated"] = True
    return stamped
