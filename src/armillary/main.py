"""The composition root behind the `armillary` console script.

The CLI package talks to servers only through the client; the commands that *run*
Armillary in this process, `server` and `node`, and the two that open its store
directly, `backup` and `restore`, are added here, so the CLI never
imports the server side and the server side never imports the CLI. (`up` only starts
them as child processes, so it lives in the CLI.)
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from armillary import launcher, logs
from armillary.cli import console
from armillary.cli.main import app
from armillary.config import Settings
from armillary.errors import ArmillaryError

__all__ = ["app", "main"]

T = TypeVar("T")

HOST_HELP = "Address to listen on (default 127.0.0.1, or ARMILLARY_HOST)."
PORT_HELP = "Port to listen on (default 7400, or ARMILLARY_PORT)."
LOG_FORMAT_HELP = (
    "Log lines as text or as one JSON object a line (or ARMILLARY_LOG_FORMAT; default text)."
)


class LogFormat(enum.StrEnum):
    """`--log-format`'s choices (logs.FORMATS)."""

    text = "text"
    json = "json"


@app.command()
def server(
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on (default 127.0.0.1, or ARMILLARY_HOST)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default 7400, or ARMILLARY_PORT).")
    ] = None,
    fd: Annotated[
        int | None,
        typer.Option(
            help="Serve on this inherited, already bound TCP socket instead of binding "
            "--host/--port (which then only name the server's own URL)."
        ),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            help="The server's own log: text lines, or one JSON object a line "
            "(or ARMILLARY_LOG_FORMAT; default text)."
        ),
    ] = None,
) -> None:
    """Run the Armillary server (SQLite under ./.armillary unless ARMILLARY_DATABASE_URL is set).

    `--fd` lets whoever starts the server own the port: a supervisor (or a test) binds
    the socket, keeps it until the server is up and hands it down, so no other process
    can take the port between choosing it and listening on it.
    """
    import pydantic
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from armillary.api import connections
    from armillary.api.app import create_server

    try:
        settings = Settings()
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            where = "_".join(str(p) for p in error["loc"]).upper()
            prefix = f"ARMILLARY_{where}: " if where else ""
            typer.echo(f"armillary server: {prefix}{error['msg']}", err=True)
        raise typer.Exit(2) from None
    given = {"host": host, "port": port, "log_format": log_format and log_format.value}
    settings = settings.model_copy(update={k: v for k, v in given.items() if v is not None})
    config = uvicorn.Config(
        create_server(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # JSON: uvicorn's loggers and ours through one formatter; text: uvicorn's own.
        log_config=logs.uvicorn_config(settings.log_level)
        if settings.log_format == "json"
        else LOGGING_CONFIG,
        access_log=False,
        # Connections that never send a whole request's headers are closed.
        http=connections.protocol(header_timeout_s=settings.header_timeout_s),
        # uvicorn believes X-Forwarded-* from 127.0.0.1 by default: any process on the
        # machine could then choose its address for rate limits and the audit log.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )
    uvicorn.Server(config).run(sockets=None if fd is None else [inherited_socket(fd)])


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket behind an inherited descriptor, as the kernel knows it.

    uvicorn's own `fd=` takes every descriptor for a Unix socket, and asyncio sets
    TCP_NODELAY only on TCP connections: each answer on a kept-alive connection, written
    as headers then body, then waited about 40 ms for the client's delayed ACK."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise typer.BadParameter(f"descriptor {fd}: {exc.strerror}", param_hint="--fd") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise typer.BadParameter(f"descriptor {fd} is not a stream socket", param_hint="--fd")
    return sock


@app.command()
def node(
    server: Annotated[str | None, typer.Option(help="Server URL (or ARMILLARY_URL).")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="The node's key; visible to every user in ps, so prefer --token-file "
            "or ARMILLARY_NODE_TOKEN (then ARMILLARY_TOKEN)."
        ),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="A file holding the node's key (alone on one line).")
    ] = None,
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
    tenant_uids: Annotated[
        str | None,
        typer.Option(
            help="As root, run each tenant as its own user with a uid from FIRST-LAST "
            "(or ARMILLARY_TENANT_UIDS; default 200000-265535); 'off' runs every tenant "
            "as the daemon's user."
        ),
    ] = None,
    takeover: Annotated[
        bool,
        typer.Option(help="Replace a daemon that is connected under this node name (audited)."),
    ] = False,
    port_leases: Annotated[
        Path | None,
        typer.Option(
            help="Directory of host-wide port leases, shared by every daemon of the machine "
            "(or ARMILLARY_PORT_LEASES; default /run/armillary/ports as root)."
        ),
    ] = None,
    dynamic_ports: Annotated[
        str | None,
        typer.Option(help="FIRST-LAST: where ports of 0 are picked from (default 20000-31999)."),
    ] = None,
    cpu_millicores: Annotated[
        int | None,
        typer.Option(
            help="CPU offered to the scheduler (or ARMILLARY_NODE_CPU_MILLICORES; "
            "default: cores x 1000)."
        ),
    ] = None,
    memory_mb: Annotated[
        int | None,
        typer.Option(
            help="Memory offered to the scheduler (or ARMILLARY_NODE_MEMORY_MB; "
            "default: all of it)."
        ),
    ] = None,
    log_format: Annotated[LogFormat | None, typer.Option(help=LOG_FORMAT_HELP)] = None,
) -> None:
    """Run a node daemon: connect to the server and run the replicas it assigns."""
    try:
        launcher.start_node(
            server=server,
            token=token,
            token_file=token_file,
            name=name,
            labels=labels,
            data_dir=data_dir,
            address=address,
            stop_workloads_on_exit=stop_workloads_on_exit,
            tenant_uids=tenant_uids,
            takeover=takeover,
            port_leases=port_leases,
            dynamic_ports=dynamic_ports,
            cpu_millicores=cpu_millicores,
            memory_mb=memory_mb,
            log_format=log_format and log_format.value,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def backup(
    file: Annotated[Path, typer.Argument(help="Where to write the backup (gzip'd JSON lines).")],
) -> None:
    """Take a consistent online snapshot of the store into FILE.

    Reads the store directly (ARMILLARY_DATABASE_URL, or the SQLite file under
    ARMILLARY_HOME), as `armillary server` finds it; the server may keep running.
    Secret values stay encrypted: keep the secret key apart from the backup."""
    import asyncio

    from armillary.store import backup as backups

    settings = _settings("backup")
    summary = _run(lambda: asyncio.run(backups.take(settings.resolved_database_url(), file)))
    typer.echo(
        f"backed up {summary.total_rows} rows of {len(summary.rows)} tables "
        f"(schema {summary.revision}, {summary.backend}) to {file}"
    )


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A file `armillary backup` wrote.")],
) -> None:
    """Load FILE into an empty store (ARMILLARY_DATABASE_URL or ARMILLARY_HOME).

    Refuses a store holding any row, and a damaged file (naming where it is broken);
    either way nothing is changed. Stop the server first; start it once restored."""
    import asyncio

    from armillary.store import backup as backups

    settings = _settings("restore")
    if not file.is_file():
        typer.echo(f"armillary restore: no file {file}", err=True)
        raise typer.Exit(console.EXIT_INVALID)
    summary = _run(lambda: asyncio.run(backups.load(settings.resolved_database_url(), file)))
    typer.echo(f"restored {summary.total_rows} rows of {len(summary.rows)} tables from {file}")


def _settings(command: str) -> Settings:
    import pydantic

    try:
        return Settings()
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            where = "_".join(str(p) for p in error["loc"]).upper()
            typer.echo(f"armillary {command}: ARMILLARY_{where}: {error['msg']}", err=True)
        raise typer.Exit(2) from None


def _run(call: Callable[[], T]) -> T:
    """`call`, with Armillary's errors printed and turned into their exit codes."""
    try:
        return call()
    except ArmillaryError as exc:
        console.fail(exc)


def main() -> None:
    app()
