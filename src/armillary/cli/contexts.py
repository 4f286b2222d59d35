"""`armillary context list|use|set|delete`: the user's named servers (`userconfig`).

These commands edit a local file only; they never call a server. No token is ever
printed: `list` says only whether a context has one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from armillary.cli import output, userconfig
from armillary.cli.console import fail, out
from armillary.errors import ArmillaryError, Invalid

app = typer.Typer(
    help="Named servers and their tokens, in the user's config directory.",
    no_args_is_help=True,
)


@app.command("list")
def list_() -> None:
    """List the contexts; the current one is marked with `*`."""
    try:
        config = userconfig.load()
    except ArmillaryError as exc:
        fail(exc)
    if not config.contexts:
        out.print(
            f"No contexts in {userconfig.path()}. `armillary up` adds one; "
            "or: armillary context set NAME --server URL --token-file FILE"
        )
        return
    rows = [["CURRENT", "NAME", "SERVER", "TOKEN", "HOME"]]
    for name, entry in sorted(config.contexts.items()):
        rows.append(
            [
                "*" if name == config.current else "",
                name,
                entry.server,
                "yes" if entry.token else "no",
                entry.home or "-",
            ]
        )
    out.print(output.align(rows), markup=False)


@app.command()
def use(name: Annotated[str, typer.Argument(help="The context to make current.")]) -> None:
    """Make NAME the current context: commands run anywhere then talk to its server."""
    try:
        config = userconfig.load()
        config.entry(name)
        userconfig.save(dataclasses.replace(config, current=name))
    except ArmillaryError as exc:
        fail(exc)
    out.print(f"Switched to context {name!r}.")


@app.command("set")
def set_(
    name: Annotated[str, typer.Argument(help="The context to add or change.")],
    server: Annotated[
        str | None, typer.Option("--server", "-s", help="Server URL (needed for a new context).")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="Read the token from this file (not shown in `ps`, unlike --token)."),
    ] = None,
    token: Annotated[str | None, typer.Option(help="The token itself.")] = None,
    current: Annotated[
        bool, typer.Option("--use", help="Also make it the current context.")
    ] = False,
) -> None:
    """Add or change the context NAME: its server and token. The first one added becomes
    current."""
    try:
        if token is not None and token_file is not None:
            raise Invalid("give --token or --token-file, not both")
        if token_file is not None:
            try:
                token = token_file.read_text().strip()
            except OSError as exc:
                raise Invalid(f"--token-file: cannot read {token_file}: {exc}") from exc
            if not token:
                raise Invalid(f"--token-file: {token_file} is empty")
        config = userconfig.load()
        before = config.contexts.get(name)
        if before is None and not server:
            raise Invalid(f"context {name!r} is new: --server URL is needed")
        entry = userconfig.Entry(
            server=server or (before.server if before else ""),
            token=token if token is not None else (before.token if before else None),
            home=before.home if before and not server else None,
        )
        where = userconfig.put(name, entry, make_current=current)
    except ArmillaryError as exc:
        fail(exc)
    what = "changed" if before else "added"
    out.print(f"Context {name!r} {what} in {where} (server {entry.server}).")


@app.command()
def delete(name: Annotated[str, typer.Argument(help="The context to remove.")]) -> None:
    """Remove the context NAME (if it was current, no context is current then)."""
    try:
        config = userconfig.load()
        config.entry(name)
        contexts = {k: v for k, v in config.contexts.items() if k != name}
        current = None if config.current == name else config.current
        userconfig.save(userconfig.Config(current=current, contexts=contexts))
    except ArmillaryError as exc:
        fail(exc)
    out.print(f"Deleted context {name!r}.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="context")
