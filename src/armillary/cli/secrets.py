"""`armillary secret reveal NAME`: print a Secret's values in clear (admins only).

`get secrets` and `describe secret NAME` show every value as `<redacted>`; this is the
one command that prints values, on an explicit request, and the server records each
reveal in the audit log. The default output is `KEY=value` lines, quoted for a POSIX
shell, so `eval "$(armillary secret reveal db)"` or a `.env` file can take them.
"""

from __future__ import annotations

import shlex
from enum import StrEnum
from typing import Annotated

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.console import call
from armillary.client import Client

app = typer.Typer(help="One Secret: print its values (admin).")


class Format(StrEnum):
    env = "env"
    json = "json"
    yaml = "yaml"


def reveal(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The Secret's name.")],
    output_format: Annotated[
        Format, typer.Option("--output", "-o", help="env (KEY=value lines), json or yaml.")
    ] = Format.env,
) -> None:
    """Print a Secret's values in clear. Needs an admin token; the server audits it."""

    async def work(api: Client) -> wire.Resource:
        return await api.reveal_secret(name)

    document = wire.dump(call(ctx, work))
    # typer.echo, not Rich: values are printed byte for byte (no markup, no emoji codes).
    if output_format is Format.json:
        typer.echo(output.to_json(document))
    elif output_format is Format.yaml:
        typer.echo(output.to_yaml(document), nl=False)
    else:
        data: dict[str, str] = document.get("spec", {}).get("data", {})
        for key, value in data.items():
            typer.echo(f"{key}={shlex.quote(value)}")


def register(root: typer.Typer) -> None:
    app.command()(reveal)
    root.add_typer(app, name="secret")
