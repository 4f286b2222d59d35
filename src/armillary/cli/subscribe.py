"""The CLI's side of `/api/v1/ws`: `connect(api)` is the `watching.Connect` every `-w`
uses, and `run(ctx, work)` runs a watch until Ctrl-C (exit 0, no traceback) or an error
(printed, with its exit code, as `console.call` does).

One socket per watch, one subscription on it; the socket answers the server's pings.
A close the server explains (4001 unauthenticated, 4008 too slow) becomes the matching
error or a `Dropped` to reconnect from; any other loss is a `Dropped`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import typer
import websockets
from websockets.asyncio.client import connect as open_socket

from armillary.cli import live, output, watching
from armillary.cli.console import call, err
from armillary.client import Client
from armillary.errors import Unauthorized

PATH = "/api/v1/ws"
CLOSE_UNAUTHENTICATED = 4001


def url_of(api: Client) -> str:
    """ws:// or wss:// of the API's server."""
    base = api.url
    scheme = "wss" if base.startswith("https:") else "ws"
    return f"{scheme}:{base.split(':', 1)[1]}{PATH}"


def connect(api: Client) -> watching.Connect:
    """Frames of one subscription on a socket of its own, for `api`'s server and token."""
    headers = {"Authorization": api.authorization} if api.authorization else {}

    async def frames(subscription: watching.Subscription) -> AsyncIterator[watching.Frame]:
        ident = uuid.uuid4().hex[:8]
        try:
            async with open_socket(
                url_of(api), additional_headers=headers, max_size=None, open_timeout=30
            ) as socket:
                request = {
                    "channel": subscription.channel,
                    "type": "subscribe",
                    "id": ident,
                    "payload": dict(subscription.payload),
                }
                await socket.send(json.dumps(request))
                async for raw in socket:
                    frame: dict[str, Any] = json.loads(raw)
                    if frame.get("channel") == "system" and frame.get("type") == "ping":
                        await socket.send(json.dumps(_pong()))
                        continue
                    if frame.get("id") in (ident, None):
                        yield frame
        except websockets.ConnectionClosed as exc:
            _closed(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "")
            raise watching.Dropped(str(exc)) from None
        except websockets.InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise Unauthorized("the server refused the token for its WebSocket") from None
            raise watching.Dropped(f"the server answered {exc.response.status_code}") from None
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            raise watching.Dropped(str(exc) or type(exc).__name__) from None
        raise watching.Dropped("the server closed the connection")

    return frames


def _pong() -> dict[str, Any]:
    return {"channel": "system", "type": "pong", "id": None, "payload": {}}


def _closed(code: int | None, reason: str) -> None:
    if code == CLOSE_UNAUTHENTICATED:
        raise Unauthorized(reason or "the server refused the token (close 4001)")


def run(ctx: typer.Context, work: Callable[[Client], Awaitable[None]]) -> None:
    """Run a watch until Ctrl-C ends it (exit 0) or it fails (printed, its exit code)."""
    try:
        call(ctx, work)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def say(text: str) -> None:
    """What a watch tells the user besides its output (a reconnect): on stderr."""
    err.print(text, markup=False)


def follow(
    ctx: typer.Context,
    watch: Callable[[Client], watching.Watch],
    view: live.View,
    fmt: output.Format,
    *,
    redraw: bool = False,
    events: bool = False,
) -> None:
    """`armillary … -w`: show the list `watch(api)` subscribes to, then its changes, as
    `live.pick` chooses, until Ctrl-C."""

    async def work(api: Client) -> None:
        updates = watching.updates(connect(api), watch(api), said=say)
        await live.show(updates, live.pick(view, fmt, redraw=redraw, events=events))

    run(ctx, work)
