"""`--limit`, shared by the listing commands: they page through a list by default
(the client asks for page after page, each with the `continue` of the one before,
until no more follow: client.py `pages`), so a list longer than a page comes out
whole; `--limit N` stops after N items, in the list's own order."""

from __future__ import annotations

from typing import Annotated

import typer

Limit = Annotated[
    int | None,
    typer.Option("--limit", min=1, help="Show at most this many; without it, every one."),
]
