"""`armillary events`: the webhook events the server received, newest first.

Filters go to `GET /api/v1/events` as they are; its pages are fetched one after the
other until every event (or `--limit` of them) is had. A tenant token must pass `--tenant`
with its own tenant. The table leaves bodies out; `-o json` and `-o yaml` have everything.
"""

from __future__ import annotations

from typing import Annotated

import typer

from armillary import wire
from armillary.cli import output
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
) -> None:
    """List inbound webhook events: where they came from and which tenant got them."""
    filters: dict[str, str | None] = {"source": source, "tenant": tenant, "state": state}

    async def work(api: Client) -> list[wire.Event]:
        return await api.events(filters, limit=limit)

    listing = output.Listing(
        items=[wire.dump(i) for i in call(ctx, work)],
        columns=COLUMNS,
        wide=WIDE,
        name=lambda d: f"event/{d['id']}",
        empty="no events match",
    )
    output.show(listing, out_format)


def register(main: typer.Typer) -> None:
    main.command("events")(list_events)
