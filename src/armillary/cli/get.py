"""`armillary get`, `describe` and `delete`: read and remove resources by kind and name."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.console import call, fail, out
from armillary.client import Client
from armillary.errors import Invalid
from armillary.resources import kinds

KindArg = Annotated[
    str, typer.Argument(help="Kind: org, stack, release, secret, tenant, schedule, webhooksource.")
]


def _kind(word: str) -> kinds.Kind:
    try:
        return kinds.lookup(word)
    except KeyError as exc:
        fail(Invalid(str(exc.args[0])))


def get(
    ctx: typer.Context,
    kind: KindArg,
    name: Annotated[
        str | None, typer.Argument(help="One resource; all of the kind when left out.")
    ] = None,
    output_format: output.Output = output.Format.table,
    selector: Annotated[
        str | None, typer.Option("--selector", "-l", help="Label filter: k=v,k2=v2.")
    ] = None,
) -> None:
    """List resources of a kind, or show one."""
    found = _kind(kind)
    if name is not None and selector is not None:
        raise typer.BadParameter(
            "a label selector cannot be combined with a name", param_hint="--selector"
        )

    async def work(api: Client) -> list[wire.Resource]:
        if name is not None:
            return [await api.get(found.name, name)]
        return await api.list_kind(found.name, selector=selector)

    docs = [wire.dump(r) for r in call(ctx, work)]  # as the server sent them
    listing = output.Listing(
        items=docs,
        columns=output.resource_columns(found.name, now=dt.datetime.now(dt.UTC)),
        wide=output.WIDE,
        name=output.resource_name,
        empty=f"No {found.plural} found.",
        document=name is not None,
        envelope=_list,
    )
    output.show(listing, output_format)


def _list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A list of resources as kubectl prints one, so `apply -f` takes it back."""
    return {"apiVersion": "armillary.dev/v1", "kind": "List", "items": items}


def describe(ctx: typer.Context, kind: KindArg, name: str) -> None:
    """Show one resource in full: metadata, spec and status."""
    found = _kind(kind)

    async def work(api: Client) -> wire.Resource:
        return await api.get(found.name, name)

    out.print(output.describe(wire.dump(call(ctx, work))), markup=False, end="")


def delete(
    ctx: typer.Context, kind: KindArg, names: Annotated[list[str], typer.Argument(help="Names.")]
) -> None:
    """Delete resources by kind and name, in order; stops at the first that fails."""
    found = _kind(kind)
    for name in names:

        async def work(api: Client, name: str = name) -> wire.ResourceWritten:
            return await api.delete(found.name, name)

        call(ctx, work)
        out.print(f"{found.name.lower()}/{name} deleted")


def register(app: typer.Typer) -> None:
    app.command()(get)
    app.command()(describe)
    app.command()(delete)
