"""`armillary version`: the client's version and, when a server is reachable, the
server's — the first thing to compare when the two disagree about a field."""

from __future__ import annotations

import platform
from enum import StrEnum
from typing import Annotated, Any

import typer

from armillary import __version__, wire
from armillary.cli import output
from armillary.cli.console import call, out
from armillary.client import Client


class Format(StrEnum):
    """`-o` of `version`: text, or the versions as a document (kubectl's choices)."""

    table = "table"
    json = "json"
    yaml = "yaml"


def version(
    ctx: typer.Context,
    client_only: Annotated[
        bool, typer.Option("--client", help="Only the client's version; ask no server.")
    ] = False,
    output_format: Annotated[
        Format, typer.Option("--output", "-o", help="table, json or yaml.")
    ] = Format.table,
) -> None:
    """Print the client's and the server's versions."""
    client = {"version": __version__, "python": platform.python_version()}
    server: wire.Version | None = None
    if not client_only:

        async def work(api: Client) -> wire.Version:
            return await api.version()

        server = call(ctx, work)
    if output_format is not Format.table:
        shown: dict[str, Any] = {"client": client}
        if server is not None:
            shown["server"] = wire.dump(server)
        text = output.to_json(shown) if output_format is Format.json else output.to_yaml(shown)
        out.print(text.rstrip("\n"), markup=False)
        return
    out.print(f"Client: armillary {__version__} (Python {client['python']})", markup=False)
    if server is not None:
        out.print(
            f"Server: armillary {server.version} (API {server.api_version}, "
            f"Python {server.python})",
            markup=False,
        )


def register(app: typer.Typer) -> None:
    app.command()(version)
