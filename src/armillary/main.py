"""The composition root behind the `armillary` console script.

The CLI package talks to servers only through the client; the commands that *run*
Armillary in this process (`server`, later `node` and `up`) are added here, so the
CLI never imports the server side and the server side never imports the CLI.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from armillary.cli.main import app
from armillary.config import Settings

HOST_HELP = "Address to listen on (default 127.0.0.1, or ARMILLARY_HOST)."
PORT_HELP = "Port to listen on (default 7400, or ARMILLARY_PORT)."


@app.command()
def server(
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on (default 127.0.0.1, or ARMILLARY_HOST)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default 7400, or ARMILLARY_PORT).")
    ] = None,
) -> None:
    """Run the Armillary server (SQLite under ./.armillary unless ARMILLARY_DATABASE_URL is set)."""
    import uvicorn

    from armillary.api.app import create_app

    settings = Settings()
    settings = settings.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


@app.command()
def node(
    server: Annotated[str | None, typer.Option(help="Server URL (or ARMILLARY_URL).")] = None,
    token: Annotated[str | None, typer.Option(help="Admin token (or ARMILLARY_TOKEN).")] = None,
    name: Annotated[str | None, typer.Option(help="Node name (default: the host name).")] = None,
    labels: Annotated[str | None, typer.Option(help="Labels: k=v,k2=v2.")] = None,
    data_dir: Annotated[Path, typer.Option(help="Where replica logs and state live.")] = Path(
        ".armillary/node"
    ),
    address: Annotated[str, typer.Option(help="Address replicas listen on.")] = "127.0.0.1",
    stop_workloads_on_exit: Annotated[
        bool,
        typer.Option(
            help="Stop every replica when the daemon stops (default: leave them running)."
        ),
    ] = False,
) -> None:
    """Run a node daemon: connect to the server and run the replicas it assigns."""
    import logging

    from armillary.cli import context
    from armillary.node import daemon

    target = context.resolve(url=server, token=token)
    if not target.token:
        raise typer.BadParameter(
            "a token is needed: --token or ARMILLARY_TOKEN", param_hint="--token"
        )
    parsed: dict[str, str] = {}
    for part in filter(None, (labels or "").split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected k=v, got {part!r}", param_hint="--labels")
        parsed[key.strip()] = value.strip()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = daemon.Options(
        server=target.url,
        token=target.token,
        labels=parsed,
        data_dir=data_dir.resolve(),
        address=address,
        stop_workloads_on_exit=stop_workloads_on_exit,
    )
    if name:
        options = dataclasses.replace(options, name=name)
    daemon.run(options)


def main() -> None:
    app()
