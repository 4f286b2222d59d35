"""`armillary version`: the client's version and, when a server is reachable, the
server's — the first thing to compare when the two disagree about a field."""

from __future__ import annotations

import platform
from typing import Annotated

import typer

from armillary import __version__, wire
from armillary.cli import output
from armillary.cli.console import call, out
from armillary.client import Client


def version(
    ctx: typer.Context,
    client_only: Annotated[
        bool, typer.Option("--client", help="Only the client's version; ask no server.")
    ] = False,
    output_format: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """Print the client's and the server's versions."""
    client = {"version": __version__, "python": platform.python_version()}
    server: wire.Version | None = None
    if not client_only:

        async def work(api: Client) -> wire.Version:
            return await api.version()

        server = call(ctx, work)
    if output_format == "json":
        shown = {"client": client, **({"server": wire.dump(server)} if server else {})}
        out.print(output.to_json(shown), markup=False)
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
