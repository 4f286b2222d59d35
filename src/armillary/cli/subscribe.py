"""The CLI's side of `/api/v1/ws`: `connect(api)` is the `watching.Connect` every `-w`
uses (through `armillary.live_client`), and `run(ctx, work)` runs a watch until Ctrl-C
(exit 0, no traceback) or an error (printed, with its exit code, as `console.call`
does).

One socket per watch, one subscription on it (the client answers the server's pings).
A close the server explains becomes the matching error (4001: `Unauthorized`, exit 7)
or a `Dropped` to reconnect from (4008 too slow, 1001 shutting down, a broken socket);
a subscription's `error` frame is handed on as the frame it was, for `watching` to
judge (Expired: list again; Invalid, Forbidden: the end).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import typer
import websockets

from armillary import live_client
from armillary.cli import live, output, watching
from armillary.cli.console import call, err
from armillary.client import Client
from armillary.errors import Unauthorized

CLOSE_UNAUTHENTICATED = 4001


def connect(api: Client) -> watching.Connect:
    """Frames of one subscription on a socket of its own, for `api`'s server and token."""
    headers = {"Authorization": api.authorization} if api.authorization else {}

    async def frames(
        subscription: watching.Subscription,
    ) -> AsyncGenerator[watching.Frame, None]:
        try:
            async with live_client.Live.connect(api.url, headers=headers) as socket:
                found = await socket.subscribe(subscription.channel, **subscription.payload)
                async for frame in found:
                    yield _dict(frame)
        except live_client.LiveError as exc:
            yield {"channel": "system", "type": "error", "id": None, "payload": _error(exc)}
        except live_client.Closed as exc:
            if exc.code == CLOSE_UNAUTHENTICATED:
                raise Unauthorized(f"the server refused the watch: {exc.reason}") from None
            raise watching.Dropped(str(exc)) from None
        except websockets.InvalidStatus as exc:
            raise _refused(exc.response.status_code) from None
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise watching.Dropped(str(exc) or type(exc).__name__) from None
        raise watching.Dropped("the server ended the subscription")

    return frames


def _dict(frame: live_client.Frame) -> dict[str, Any]:
    return {"channel": frame.channel, "type": frame.type, "id": frame.id, "payload": frame.payload}


def _error(exc: live_client.LiveError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "field": exc.field}


def _refused(status: int) -> Exception:
    if status in (401, 403):
        return Unauthorized("the server refused the token for its WebSocket")
    if status == 404:
        return watching.Dropped("the server has no /api/v1/ws (is it older than this CLI?)")
    return watching.Dropped(f"the server answered {status} to the WebSocket")


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
