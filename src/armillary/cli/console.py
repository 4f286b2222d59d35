"""How CLI commands talk to the server and report failure.

`call(ctx, work)` opens a client for the resolved target, runs `work(client)` and
turns any Armillary error into a readable message on stderr and the exit code of
its class, so a script can tell "not there" from "try again later" without parsing
the message:

    0 ok                     4 invalid input (Invalid, 400/413/422, a bad file)
    1 any other error        5 not found (NotFound, 404)
    2 usage (Typer's own,    6 conflict (Conflict 409, Gone 410)
      an unknown -o value)   7 unauthorized or forbidden (401, 403)
    3 `plan --detailed-      8 unavailable or timed out (server not listening,
      exitcode` found          connection timeout, 429, 5xx, TemporaryError)
      changes
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from armillary.cli import context
from armillary.client import Client, ServerError, Unreachable
from armillary.errors import (
    ArmillaryError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    Issue,
    NotFound,
    TemporaryError,
    Unauthorized,
)

T = TypeVar("T")
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CHANGES = 0, 1, 2, 3
EXIT_INVALID, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_DENIED, EXIT_UNAVAILABLE = 4, 5, 6, 7, 8

EXIT_CODES: tuple[tuple[tuple[type[ArmillaryError], ...], int], ...] = (
    ((Invalid,), EXIT_INVALID),
    ((NotFound,), EXIT_NOT_FOUND),
    ((Conflict, Gone), EXIT_CONFLICT),
    ((Unauthorized, Forbidden), EXIT_DENIED),
    ((TemporaryError, Unreachable, ServerError), EXIT_UNAVAILABLE),
)
"""Error class → exit code, first match wins (subclasses follow their parent)."""

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def exit_code(exc: ArmillaryError) -> int:
    """The exit code of `exc`'s class (see the table above); 1 for any other."""
    for classes, code in EXIT_CODES:
        if isinstance(exc, classes):
            return code
    return EXIT_ERROR


def call(
    ctx: typer.Context,
    work: Callable[[Client], Awaitable[T]],
    *,
    where: Callable[[Issue], Issue] | None = None,
) -> T:
    """Run `work` against the server; on failure print the server's message and exit
    with the code of the error's class."""
    try:
        target = resolve(ctx)
    except ArmillaryError as exc:
        fail(exc)

    async def session() -> T:
        async with Client(target.url, target.token) as api:
            return await work(api)

    try:
        return asyncio.run(session())
    except ArmillaryError as exc:
        fail(context.missing_token(exc, target), where=where)


def resolve(ctx: typer.Context) -> context.Target:
    """The target the global options (`--server`, `--token`, `--context`) point at."""
    options = ctx.obj or {}
    return context.resolve(
        url=options.get("server"), token=options.get("token"), name=options.get("context")
    )


def fail(exc: ArmillaryError, *, where: Callable[[Issue], Issue] | None = None) -> NoReturn:
    """Print `exc` (every issue on its own line) and exit with its class's code."""
    if isinstance(exc, Invalid):
        issues: Sequence[Issue] = [where(i) if where else i for i in exc.issues]
        for issue in issues:
            err.print(f"[red]error:[/red] {escape(str(issue))}")
    else:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(exit_code(exc))
