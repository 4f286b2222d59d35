"""`armillary token …` and `armillary users …`: API keys, tenant tokens, dashboard users.

A key or token value is printed once, when it is created, and never again: the
server keeps only its hash (keys) or nothing at all (tenant tokens, which are
signed and short-lived).
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import output, paging
from armillary.cli.console import call, err, fail, out
from armillary.client import Client
from armillary.errors import Invalid

tokens = typer.Typer(help="API keys (viewer, developer, admin, node) and tenant tokens.")
users = typer.Typer(help="Dashboard users.")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(value: str, *, option: str) -> int:
    """`90s`, `15m`, `12h`, `30d` → seconds."""
    number, unit = value[:-1], value[-1:]
    if unit not in _UNITS or not number.isdigit() or int(number) <= 0:
        fail(Invalid(f"{option}: expected a duration like 15m, 12h or 30d, got {value!r}"))
    return int(number) * _UNITS[unit]


@tokens.command("create")
def create_key(
    ctx: typer.Context,
    role: Annotated[
        str | None,
        typer.Option(
            help="viewer, developer, admin or node (default: node with --node, else viewer)."
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    expires: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d.")] = None,
    node: Annotated[
        str | None,
        typer.Option(help="The one node name a node key may register (its daemon's --name)."),
    ] = None,
) -> None:
    """Create an API key and print it (this is the only time it is shown)."""
    lifetime = duration_s(expires, option="--expires") if expires else None
    chosen = role or ("node" if node else "viewer")

    async def work(api: Client) -> wire.NewApiKey:
        return await api.create_key(
            role=chosen, description=description, expires_in_s=lifetime, node=node
        )

    created = call(ctx, work)
    if created.role == "node":
        bound = f"node {created.node}" if created.node else "the first node name it registers"
        err.print(f"key {created.id} (node, bound to {bound}); shown once, store it now:")
    else:
        err.print(f"key {created.id} ({created.role}); shown once, store it now:")
    out.print(created.token, markup=False)


@tokens.command("list")
def list_keys(
    ctx: typer.Context,
    output_format: output.Output = output.Format.table,
    limit: paging.Limit = None,
) -> None:
    """List API keys: id, role, description, dates (never their values)."""

    async def work(api: Client) -> list[wire.ApiKey]:
        return await api.keys(limit=limit)

    listing = output.Listing(
        items=[wire.dump(k) for k in call(ctx, work)],
        columns=[
            ("ID", lambda d: d["id"]),
            ("ROLE", lambda d: d["role"]),
            ("NODE", lambda d: d.get("node") or "-"),
            ("DESCRIPTION", lambda d: d["description"]),
            ("CREATED", lambda d: d["createdAt"]),
            ("EXPIRES", lambda d: d.get("expiresAt") or "-"),
            ("REVOKED", lambda d: d.get("revokedAt") or "-"),
        ],
        wide=[("STATE", _key_state)],
        name=lambda d: f"key/{d['id']}",
        empty="No API keys.",
    )
    output.show(listing, output_format)


def _key_state(doc: dict[str, Any]) -> str:
    """`revoked`, `expired` or `active`: what a request with the key would meet."""
    if doc.get("revokedAt"):
        return "revoked"
    expires = doc.get("expiresAt")
    if expires and dt.datetime.fromisoformat(expires.replace("Z", "+00:00")) <= dt.datetime.now(
        dt.UTC
    ):
        return "expired"
    return "active"


@tokens.command("revoke")
def revoke_key(ctx: typer.Context, key_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Revoke an API key: every request with it is refused from now on."""

    async def work(api: Client) -> wire.ApiKey:
        return await api.revoke_key(key_id)

    revoked = call(ctx, work)
    out.print(f"key {revoked.id} revoked at {revoked.revoked_at}")


@tokens.command("tenant")
def tenant_token(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="The tenant it is scoped to.")],
    ttl: Annotated[str, typer.Option(help="Lifetime (at most 24h).")] = "15m",
) -> None:
    """Mint a short-lived token that may read only TENANT's own things."""
    ttl_s = duration_s(ttl, option="--ttl")

    async def work(api: Client) -> wire.TenantToken:
        return await api.tenant_token(tenant, ttl_s=ttl_s)

    minted = call(ctx, work)
    err.print(f"tenant token for {tenant}, expires {minted.expires_at}:")
    out.print(minted.token, markup=False)


@tokens.command("revoke-tenant")
def revoke_tenant(ctx: typer.Context, tenant: Annotated[str, typer.Argument()]) -> None:
    """Refuse every token issued to TENANT until now."""

    async def work(api: Client) -> wire.TenantTokensRevoked:
        return await api.revoke_tenant_tokens(tenant)

    out.print(f"tokens of {tenant} issued before {call(ctx, work).revoked_before} are refused")


@users.command("create")
def create_user(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Option(help="viewer, developer or admin.")] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a dashboard user (password from stdin, or asked for twice)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def work(api: Client) -> wire.User:
        return await api.create_user(name=name, password=password, role=role)

    created = call(ctx, work)
    out.print(f"user/{created.name} created ({created.role})")


@users.command("list")
def list_users(
    ctx: typer.Context,
    output_format: output.Output = output.Format.table,
    limit: paging.Limit = None,
) -> None:
    """List dashboard users and whether they are locked out."""

    async def work(api: Client) -> list[wire.User]:
        return await api.users(limit=limit)

    listing = output.Listing(
        items=[wire.dump(u) for u in call(ctx, work)],
        columns=[
            ("NAME", lambda d: d["name"]),
            ("ROLE", lambda d: d["role"]),
            ("CREATED", lambda d: d["createdAt"]),
            ("LOCKED UNTIL", lambda d: d.get("lockedUntil") or "-"),
        ],
        wide=[("DISABLED", lambda d: str(d.get("disabled", False)).lower())],
        name=lambda d: f"user/{d['name']}",
        empty="No users.",
    )
    output.show(listing, output_format)


@users.command("delete")
def delete_user(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Delete a user and close their sessions."""

    async def work(api: Client) -> wire.UserDeleted:
        return await api.delete_user(name)

    call(ctx, work)
    out.print(f"user/{name} deleted")


def register(main: typer.Typer) -> None:
    main.add_typer(tokens, name="token")
    main.add_typer(users, name="users")
