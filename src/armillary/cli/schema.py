"""`armillary schema [KIND]`: print the JSON Schema editors use to check stack files."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from armillary.cli.console import fail, out
from armillary.errors import Invalid
from armillary.resources import schema as schemas


def schema(
    kind: Annotated[str | None, typer.Argument(help="One kind; every kind when left out.")] = None,
) -> None:
    """Print the JSON Schema of one kind, or of all kinds (`oneOf` on `kind`)."""
    try:
        value = schemas.combined() if kind is None else schemas.for_kind(kind)
    except KeyError as exc:
        fail(Invalid(str(exc.args[0])))
    out.print(json.dumps(value, indent=2), markup=False)


def register(app: typer.Typer) -> None:
    app.command()(schema)
