"""`armillary events`: the webhook events the server received, newest first.

Filters go to `GET /api/v1/events` as they are; its pages are fetched one after the
other until every event (or `--limit` of them) is had. A tenant token must pass `--tenant`
with its own tenant. The table leaves bodies out; `-o json` and `-o yaml` have everything.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import live, output, subscribe, watching
from armillary.cli.console import call
from armillary.client import Client

COLUMNS: list[output.Column] = [
    ("ID", lambda d: d["id"]),
    ("RECEIVED", lambda d: d["receivedAt"]),
    ("SOURCE", lambda d: d["source"]),
    ("TYPE", lambda d: d.get("eventType") or "-"),
    ("TENANT", lambda d: d.get("tenant") or "-"),
    ("KEY", lambda d: d.get("routingKey") or "-"),
    ("STATE", lambda d: d["state"]),
]
WIDE: list[output.Column] = [
    ("DELIVERY", lambda d: d.get("deliveryId") or "-"),
    ("CONTENT TYPE", lambda d: d.get("contentType") or "-"),
    ("BODY SHA256", lambda d: d["bodySha256"]),
]


def list_events(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="The WebhookSource's name.")] = None,
    tenant: Annotated[str | None, typer.Option(help="The tenant it was routed to.")] = None,
    state: Annotated[str | None, typer.Option(help="routed or unrouted.")] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="At most this many (newest first); without it, every one."),
    ] = None,
    out_format: output.Output = output.Format.table,
    watch: live.WatchOption = False,
    watch_events: live.EventsOption = False,
) -> None:
    """List inbound webhook events: where they came from and which tenant got them.
    With -w, then print a line for each event that arrives or changes."""
    filters: dict[str, str | None] = {"source": source, "tenant": tenant, "state": state}
    if watch:
        _watch(ctx, filters, limit=limit, fmt=out_format, events=watch_events)
        return

    async def work(api: Client) -> list[wire.Event]:
        return await api.events(filters, limit=limit)

    output.show(view([wire.dump(i) for i in call(ctx, work)]), out_format)


def view(items: list[dict[str, Any]]) -> output.Listing:
    return output.Listing(
        items=items,
        columns=COLUMNS,
        wide=WIDE,
        name=lambda d: f"event/{d['id']}",
        empty="no events match",
    )


def _watch(
    ctx: typer.Context,
    filters: dict[str, str | None],
    *,
    limit: int | None,
    fmt: output.Format,
    events: bool,
) -> None:
    """`events -w`: the `events` channel (tenant and source filtered by the server)."""
    payload = {k: v for k, v in filters.items() if k in ("tenant", "source") and v is not None}

    def watch(api: Client) -> watching.Watch:
        async def relist() -> list[dict[str, Any]]:
            return [wire.dump(i) for i in await api.events(filters, limit=limit)]

        return watching.Watch(
            subscription=watching.Subscription(channel="events", payload=payload),
            key=watching.by("id"),
            decode=watching.wrapped("event"),
            relist=relist,
            keep=watching.matching(filters),
            forgets=False,
        )

    subscribe.follow(ctx, watch, view, fmt, events=events)


def register(main: typer.Typer) -> None:
    main.command("events")(list_events)
