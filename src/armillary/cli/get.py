"""`armillary get`, `describe` and `delete`: read and remove resources by kind and name.

A kind the CLI does not know is answered with the closest one (`tennants` → tenants),
and the words kubectl users reach for that are other commands here (`nodes`, `pods`)
with that command. `delete` of an Org or a Stack tenants use is refused by the server
(409, naming them) unless `--cascade`.
"""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import live, output, paging, selection, subscribe, watching
from armillary.cli.console import call, fail, out
from armillary.client import Client
from armillary.errors import Invalid
from armillary.resources import kinds

KindArg = Annotated[
    str, typer.Argument(help="Kind: org, stack, release, secret, tenant, schedule, webhooksource.")
]


ELSEWHERE = {
    **dict.fromkeys(("node", "nodes", "no"), "armillary nodes"),
    **dict.fromkeys(
        ("pod", "pods", "po", "replica", "replicas", "container", "containers"), "armillary ps"
    ),
    **dict.fromkeys(("rollout", "rollouts"), "armillary rollout history TENANT"),
}
"""Kinds of other tools (and our own non-resources) that another command shows."""


def _kind(word: str) -> kinds.Kind:
    try:
        return kinds.lookup(word)
    except KeyError as exc:
        message = str(exc.args[0])
    elsewhere = ELSEWHERE.get(word.lower())
    if elsewhere is not None:
        message = f"{word!r} is not a resource kind; use `{elsewhere}`"
    else:
        words = [w for k in kinds.KINDS for w in (k.name.lower(), k.plural, *k.short)]
        close = difflib.get_close_matches(word.lower(), words, n=1)
        if close:
            message = f"unknown kind {word!r}; did you mean {close[0]!r}?"
    fail(Invalid(message))


def get(
    ctx: typer.Context,
    kind: KindArg,
    name: Annotated[
        str | None, typer.Argument(help="One resource; all of the kind when left out.")
    ] = None,
    output_format: output.Output = output.Format.table,
    selector: selection.Option = None,
    limit: paging.Limit = None,
    watch: live.WatchOption = False,
    watch_events: live.EventsOption = False,
) -> None:
    """List resources of a kind (every one, page by page), or show one. With -w, then
    print a line (or a document) for each change, as `kubectl get -w` does."""
    found = _kind(kind)
    if name is not None and selector is not None:
        raise typer.BadParameter(
            "a label selector cannot be combined with a name", param_hint="--selector"
        )
    selection.check(selector)
    if watch:
        if limit is not None:
            raise typer.BadParameter("-w shows every one; leave --limit out", param_hint="--limit")
        _watch(ctx, found, name=name, selector=selector, fmt=output_format, events=watch_events)
        return
    if watch_events:
        raise typer.BadParameter("only with -w", param_hint="--output-watch-events")

    async def work(api: Client) -> list[wire.Resource]:
        if name is not None:
            return [await api.get(found.name, name)]
        return await api.list_kind(found.name, selector=selector, limit=limit)

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


def _watch(
    ctx: typer.Context,
    found: kinds.Kind,
    *,
    name: str | None,
    selector: str | None,
    fmt: output.Format,
    events: bool,
) -> None:
    """`get -w`: the `resources` channel, one kind, by name or label selector."""
    payload: dict[str, Any] = {"kinds": [found.name]}
    if name is not None:
        payload["name"] = name
    if selector is not None:
        payload["selector"] = selector
    watch = watching.Watch(
        subscription=watching.Subscription(channel="resources", payload=payload),
        key=watching.resource_key,
        decode=watching.decode_resource,
    )

    def view(items: list[dict[str, Any]]) -> output.Listing:
        return output.Listing(
            items=items,
            columns=output.resource_columns(found.name, now=dt.datetime.now(dt.UTC)),
            wide=output.WIDE,
            name=output.resource_name,
        )

    subscribe.follow(ctx, lambda _api: watch, view, fmt, events=events)


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
    ctx: typer.Context,
    kind: KindArg,
    names: Annotated[list[str] | None, typer.Argument(help="Names.")] = None,
    selector: selection.Option = None,
    cascade: Annotated[
        bool,
        typer.Option(
            "--cascade", help="Deleting an Org or a Stack: also delete the tenants that use it."
        ),
    ] = False,
) -> None:
    """Delete resources by name, or every one a label selector matches (`-l`).

    In order; stops at the first that fails. An Org or a Stack that tenants use is
    kept (and they are named) unless `--cascade`."""
    found = _kind(kind)
    if names and selector is not None:
        raise typer.BadParameter(
            "give names or a label selector, not both", param_hint="--selector"
        )
    if selector is not None:
        # The empty selector matches everything: too easy to type by mistake.
        selection.check(selector, refuse_empty=f"delete every {found.name.lower()}")

        async def matching(api: Client) -> list[wire.Resource]:
            return await api.list_kind(found.name, selector=selector)

        names = [r.metadata.name for r in call(ctx, matching)]
        if not names:
            out.print(f"No {found.plural} match {selector!r}.")
            return
    elif not names:
        raise typer.BadParameter("give the names to delete, or -l SELECTOR", param_hint="NAMES")
    for name in names:

        async def work(api: Client, name: str = name) -> wire.ResourceWritten:
            return await api.delete(found.name, name, cascade=cascade)

        call(ctx, work)
        out.print(f"{found.name.lower()}/{name} deleted")


def register(app: typer.Typer) -> None:
    app.command()(get)
    app.command()(describe)
    app.command()(delete)
