"""The `armillary` Typer app: global options and the commands of each noun module."""

from __future__ import annotations

from typing import Annotated

import typer

from armillary import __version__
from armillary.cli import (
    access,
    agent_runs,
    apply,
    audit,
    contexts,
    dashboard,
    doctor,
    events,
    export,
    get,
    init,
    nodes,
    overrides,
    provision,
    releases,
    render,
    replicas,
    retention,
    rollouts,
    schedules,
    schema,
    secrets,
    servers,
    top,
    up,
    version,
)

app = typer.Typer(
    name="armillary",
    help="Armillary: per-tenant service stacks, declared once and kept converged.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"armillary {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option("--server", "-s", help="Server URL (or ARMILLARY_URL).", show_default=False),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", help="API token (or ARMILLARY_TOKEN).", show_default=False),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context", help="Use this context (or ARMILLARY_CONTEXT).", show_default=False
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = {"server": server, "token": token, "context": context}


for module in (
    init,
    up,
    apply,
    get,
    schema,
    render,
    replicas,
    nodes,
    servers,
    provision,
    releases,
    rollouts,
    schedules,
    access,
    audit,
    secrets,
    events,
    agent_runs,
    doctor,
    retention,
    export,
    overrides,
    top,
    version,
    contexts,
    dashboard,
):
    module.register(app)
