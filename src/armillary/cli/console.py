"""How CLI commands talk to the server and report failure.

`call(ctx, work)` opens a client for the resolved target, runs `work(client)` and
turns any Armillary error into a readable message on stderr and exit code 1.
Exit codes: 0 ok, 1 error, 2 usage (Typer's own), 3 `plan --detailed-exitcode`
found changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from armillary.cli import context
from armillary.client import Client
from armillary.errors import ArmillaryError, Invalid, Issue

T = TypeVar("T")
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CHANGES = 0, 1, 2, 3
EXIT_INVALID, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_DENIED, EXIT_UNAVAILABLE = 4, 5, 6, 7, 8

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def call(
    ctx: typer.Context,
    work: Callable[[Client], Awaitable[T]],
    *,
    where: Callable[[Issue], Issue] | None = None,
) -> T:
    """Run `work` against the server; exit 1 with the server's message on failure."""
    target = context.resolve(url=ctx.obj.get("server"), token=ctx.obj.get("token"))

    async def session() -> T:
        async with Client(target.url, target.token) as api:
            return await work(api)

    try:
        return asyncio.run(session())
    except ArmillaryError as exc:
        fail(exc, where=where)


def fail(exc: ArmillaryError, *, where: Callable[[Issue], Issue] | None = None) -> NoReturn:
    """Print `exc` (every issue on its own line) and exit 1."""
    if isinstance(exc, Invalid):
        issues: Sequence[Issue] = [where(i) if where else i for i in exc.issues]
        for issue in issues:
            err.print(f"[red]error:[/red] {escape(str(issue))}")
    else:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(EXIT_ERROR)
