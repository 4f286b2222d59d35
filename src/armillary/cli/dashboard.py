"""`armillary dashboard`: open the server's dashboard in a browser, logged in.

With an admin's credential (the token `armillary up` saved for its local admin), it
asks the server for a one-time login link (`POST /api/v1/auth/links`) for the
dashboard user `--user` (default `admin`; the default user is created as an admin
without a password when missing, another only with `--create`, so a mistyped name
makes no admin) and opens it; the code rides in the URL's fragment, which the browser
never sends to a server. `--no-open` prints the link instead (a remote shell, a
browser on another machine). Without an admin credential it opens the login page.
"""

from __future__ import annotations

import webbrowser
from typing import Annotated

import typer

from armillary import wire
from armillary.cli.console import call, fail, out, resolve
from armillary.client import Client
from armillary.errors import ArmillaryError

DEFAULT_USER = "admin"
"""The local admin of `armillary up`, which holds a token and logs in by link."""


def dashboard(
    ctx: typer.Context,
    user: Annotated[
        str,
        typer.Option(help="The dashboard user to log in as (`admin` is created if missing)."),
    ] = DEFAULT_USER,
    create: Annotated[
        bool, typer.Option("--create", help="Create --user as an admin when missing.")
    ] = False,
    no_open: Annotated[
        bool, typer.Option("--no-open", help="Print the link; open no browser.")
    ] = False,
) -> None:
    """Open the dashboard in a browser, logged in through a one-time link."""
    try:
        target = resolve(ctx)
    except ArmillaryError as exc:
        fail(exc)
    if target.token:

        async def work(api: Client) -> wire.LoginLink:
            return await api.login_link(user, create=create or user == DEFAULT_USER)

        link = call(ctx, work)
        url = target.url.rstrip("/") + link.path
        note = f"one-time login link for {link.user}, valid until {link.expires_at}"
    else:
        url, note = target.url.rstrip("/") + "/", "no token here: log in with a user's password"
    out.print(url, markup=False, soft_wrap=True)
    out.print(f"({note})", markup=False)
    if not no_open:
        webbrowser.open(url)


def register(app: typer.Typer) -> None:
    app.command()(dashboard)
