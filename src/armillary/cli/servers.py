"""`armillary servers`: the server replicas sharing the store, and which one leads."""

from __future__ import annotations

import datetime as dt

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.console import call
from armillary.client import Client


def servers(ctx: typer.Context, output_format: output.Output = output.Format.table) -> None:
    """List the server replicas: name, address, version, which one leads, last seen."""

    async def work(api: Client) -> list[wire.Server]:
        return await api.servers()

    items = call(ctx, work)
    now = dt.datetime.now(dt.UTC)
    columns: list[output.Column] = [
        ("NAME", lambda d: d["name"]),
        ("ADDRESS", lambda d: d["address"]),
        ("VERSION", lambda d: d["version"]),
        ("LEADER", lambda d: "yes" if d["leader"] else "-"),
        ("STATE", lambda d: d["state"]),
        ("LAST SEEN", lambda d: output.age(d["seenAt"], now=now) + " ago"),
    ]
    listing = output.Listing(
        items=[wire.dump(s) for s in items],
        columns=columns,
        wide=[("STARTED", lambda d: d["startedAt"])],
        name=lambda d: f"server/{d['name']}",
        empty="No servers recorded yet.",
    )
    output.show(listing, output_format)


def register(root: typer.Typer) -> None:
    root.command(name="servers")(servers)
