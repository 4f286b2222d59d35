"""`armillary events`: the webhook events the server received, newest first.

Filters go to `GET /api/v1/events` as they are. A tenant token must pass `--tenant`
with its own tenant. The table leaves bodies out; `-o json` has everything.
"""

from __future__ import annotations

from typing import Annotated

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.console import call, fail, out
from armillary.client import Client
from armillary.errors import Invalid


def table(items: list[wire.Event]) -> str:
    rows = [["ID", "RECEIVED", "SOURCE", "TYPE", "TENANT", "KEY", "STATE"]]
    for item in items:
        rows.append(
            [
                item.id,
                item.received_at,
                item.source,
                item.event_type or "-",
                item.tenant or "-",
                item.routing_key or "-",
                item.state,
            ]
        )
    return output.align(rows)


def list_events(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="The WebhookSource's name.")] = None,
    tenant: Annotated[str | None, typer.Option(help="The tenant it was routed to.")] = None,
    state: Annotated[str | None, typer.Option(help="routed or unrouted.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="At most this many.")] = 50,
    out_format: Annotated[str, typer.Option("--output", "-o", help="table|json")] = "table",
) -> None:
    """List inbound webhook events: where they came from and which tenant got them."""
    if out_format not in ("table", "json"):
        fail(Invalid(f"--output: expected table or json, got {out_format!r}"))
    filters: dict[str, str | int | None] = {
        "source": source,
        "tenant": tenant,
        "state": state,
        "limit": limit,
    }

    async def work(api: Client) -> list[wire.Event]:
        return await api.events(filters)

    items = call(ctx, work)
    if out_format == "json":
        out.print(output.to_json([wire.dump(i) for i in items]), markup=False)
    elif items:
        out.print(table(items), markup=False)
    else:
        out.print("no events match")


def register(main: typer.Typer) -> None:
    main.command("events")(list_events)
