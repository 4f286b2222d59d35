"""Access management: dashboard login, API keys, users, and tenant tokens.

- `POST /auth/login` opens a session (HttpOnly, SameSite=Lax cookie; Secure behind
  TLS) and answers its CSRF token; `POST /auth/logout` closes it; `GET /auth/whoami`
  says who the caller is. `POST /auth/links` (admin) makes a one-time login link for
  the dashboard (`armillary dashboard`), `POST /auth/redeem` turns it into a
  session. Login is rate limited per client address by the API's limiter and locks
  a user out after repeated failures.
- `/tokens`: API keys (admin). A key is shown once, in the answer that creates it.
- `/users`: dashboard users (admin).
- `POST /tenants/{tenant}/tokens`: a short-lived token scoped to one tenant
  (developer); `POST /tenants/{tenant}/tokens/revoke` refuses every token issued to
  the tenant so far.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import ConfigDict, Field

from armillary import timestamps, wire
from armillary.api import audit, openapi, paging
from armillary.api.security import Admin, Db, Developer, TenantChecked, Viewer
from armillary.auth import passwords, sessions, tenant_tokens, tokens
from armillary.config import Settings
from armillary.errors import Unauthorized
from armillary.resources import text
from armillary.store import repository, users
from armillary.store import tokens as token_store

router = APIRouter(prefix="/api/v1", tags=["access"])
NODE_NAME = r"^[A-Za-z0-9]([-A-Za-z0-9._]*[A-Za-z0-9])?$"
"""What a node key may be bound to: a host name."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Strict(text.Storable):
    # strict: `true` is a boolean and 1 an integer, as the OpenAPI document says
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginRequest(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


@router.post("/auth/login", summary="Open a dashboard session", **openapi.answer(wire.Session, 401))
async def login(body: LoginRequest, request: Request, response: Response, db: Db) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    audit.note(request, kind="User", name=body.name)  # the name tried, never the password
    async with db.write() as conn:
        opened = await sessions.login(
            conn,
            name=body.name,
            password=body.password,
            now=_now(),
            ttl_s=settings.session_ttl_s,
            max_failures=settings.login_max_failures,
            lockout_s=settings.login_lockout_s,
        )
    if isinstance(opened, sessions.LoginRefused):
        raise Unauthorized(opened.reason)
    return _session(opened, name=body.name, request=request, response=response)


def _session(
    opened: sessions.Opened, *, name: str, request: Request, response: Response
) -> dict[str, Any]:
    """The cookie of an opened session on `response`, and the answer that tells the
    dashboard its CSRF token."""
    settings: Settings = request.app.state.settings
    request.state.principal = opened.principal
    response.set_cookie(
        sessions.COOKIE,
        opened.cookie,
        max_age=int(settings.session_ttl_s),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return {
        "user": name,
        "role": opened.principal.role,
        "csrfToken": opened.csrf_token,
        "expiresAt": timestamps.iso(opened.expires_at),
    }


LINK_TTL_S = 120.0
"""How long a login link may wait to be opened."""


class LinkRequest(Strict):
    # the pattern `sessions.check_user_name` checks, with its own message
    user: Annotated[
        str, Field(min_length=1, max_length=64, json_schema_extra={"pattern": sessions.USER_NAME})
    ]
    create: bool = Field(
        default=False,
        description="make the user (an admin without a usable password) when missing; "
        "without it a missing user is 404",
    )


@router.post(
    "/auth/links",
    summary="Make a one-time dashboard login link",
    status_code=201,
    **openapi.answer(wire.LoginLink, 404),
)
async def make_link(body: LinkRequest, request: Request, db: Db, who: Admin) -> dict[str, Any]:
    """For `user`, created as an admin without a usable password when missing and
    `create` says so (the local admin of `armillary up` holds a token, not a password).
    The code travels in the URL's fragment, which browsers never send to a server or
    put in a Referer. Who issued it is kept with it: its use's audit names them."""
    audit.note(request, kind="User", name=body.user)  # never the code
    async with db.write() as conn:
        code, expires, created = await sessions.issue_link(
            conn,
            user=body.user,
            now=_now(),
            ttl_s=LINK_TTL_S,
            create=body.create,
            issuer=f"{who.kind}:{who.id}",
        )
    return {
        "user": body.user,
        "created": created,
        "path": f"/#login={code}",
        "expiresAt": timestamps.iso(expires),
    }


class RedeemRequest(Strict):
    code: Annotated[str, Field(min_length=1, max_length=sessions.MAX_COOKIE_LENGTH)]


@router.post(
    "/auth/redeem",
    summary="Open a dashboard session with a login link",
    **openapi.answer(wire.Session, 401),
)
async def redeem_link(
    body: RedeemRequest, request: Request, response: Response, db: Db
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    async with db.read() as conn:  # a wrong code takes no write lock
        known = await sessions.is_link(conn, body.code)
    if not known:
        raise Unauthorized(sessions.LINK_REFUSED)
    async with db.write() as conn:
        redeemed = await sessions.redeem(conn, body.code, now=_now(), ttl_s=settings.session_ttl_s)
    if isinstance(redeemed, sessions.LoginRefused):
        raise Unauthorized(redeemed.reason)
    opened, issuer = redeemed
    audit.note(request, kind="User", name=opened.principal.id, extra={"linkIssuedBy": issuer})
    return _session(opened, name=opened.principal.id, request=request, response=response)


@router.post(
    "/auth/logout",
    summary="Close the caller's dashboard session",
    **openapi.answer(wire.LoggedOut),
)
async def logout(request: Request, response: Response, db: Db, _who: Viewer) -> dict[str, Any]:
    cookie = request.cookies.get(sessions.COOKIE)
    if cookie is not None:
        async with db.write() as conn:
            await sessions.logout(conn, cookie)
    response.delete_cookie(sessions.COOKIE, path="/")
    return {"loggedOut": cookie is not None}


@router.get("/auth/whoami", summary="Who the caller is", **openapi.answer(wire.WhoAmI))
async def whoami(who: TenantChecked) -> dict[str, Any]:
    return {"kind": who.kind, "id": who.id, "role": who.role, "tenant": who.tenant}


class KeyRequest(Strict):
    role: Annotated[str, Field(pattern=r"^(viewer|developer|admin|node)$")]
    description: Annotated[str, Field(max_length=256)] = ""
    expires_in_s: Annotated[int, Field(ge=1, le=10 * 365 * 86400)] | None = None
    # The one node name a node key may register (a host name); without it, the name of
    # its first hello.
    node: Annotated[str, Field(pattern=NODE_NAME, max_length=253)] | None = None


def _key_document(record: token_store.TokenRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "role": record.role,
        "description": record.description,
        "createdAt": timestamps.iso(record.created_at),
        "expiresAt": timestamps.iso(record.expires_at) if record.expires_at else None,
        "revokedAt": timestamps.iso(record.revoked_at) if record.revoked_at else None,
        "node": record.node,
    }


@router.post(
    "/tokens",
    summary="Create an API key (shown once)",
    status_code=201,
    **openapi.answer(wire.NewApiKey),
)
async def create_key(body: KeyRequest, request: Request, db: Db, _who: Admin) -> dict[str, Any]:
    now = _now()
    expires = now + dt.timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
    async with db.write() as conn:
        minted = await tokens.create(
            conn,
            role=body.role,
            description=body.description,
            now=now,
            expires_at=expires,
            node=body.node,
        )
        record = next(r for r in await token_store.list_all(conn) if r.id == minted.token_id)
    extra = {"role": record.role, **({"node": record.node} if record.node else {})}
    audit.note(request, kind="ApiKey", name=record.id, extra=extra)  # never the key
    return {**_key_document(record), "token": minted.token}


@router.get(
    "/tokens", summary="List API keys (never their values)", **openapi.answer(wire.ApiKeyList)
)
async def list_keys(
    db: Db, _who: Admin, limit: paging.Limit = None, token: paging.Continue = None
) -> dict[str, Any]:
    """Oldest first, by (`createdAt`, `id`); pages by that key (api/paging.py)."""
    async with db.read() as conn:
        found = await token_store.list_all(conn)
    taken, metadata = paging.page(
        found, lambda r: f"{paging.instant(r.created_at)}_{r.id}", limit=limit, token=token
    )
    return paging.answer([_key_document(r) for r in taken], metadata)


@router.post(
    "/tokens/{token_id}/revoke", summary="Revoke an API key", **openapi.answer(wire.ApiKey, 404)
)
async def revoke_key(token_id: str, db: Db, _who: Admin) -> dict[str, Any]:
    async with db.write() as conn:
        return _key_document(await token_store.revoke(conn, token_id, now=_now()))


class UserRequest(Strict):
    # the pattern `sessions.check_user_name` checks, with its own message
    name: Annotated[
        str, Field(min_length=1, max_length=64, json_schema_extra={"pattern": sessions.USER_NAME})
    ]
    # `passwords.check_strength` checks the length, with its own message
    password: Annotated[
        str,
        Field(min_length=1, max_length=1024, json_schema_extra={"minLength": passwords.MIN_LENGTH}),
    ]
    role: Annotated[str, Field(pattern=r"^(viewer|developer|admin)$")]


def _user_document(user: users.User) -> dict[str, Any]:
    return {
        "name": user.name,
        "role": user.role,
        "createdAt": timestamps.iso(user.created_at),
        "disabled": user.disabled_at is not None,
        "lockedUntil": timestamps.iso(user.locked_until) if user.locked_until else None,
    }


@router.post(
    "/users",
    summary="Create a dashboard user",
    status_code=201,
    **openapi.answer(wire.User, 409),
)
async def create_user(body: UserRequest, request: Request, db: Db, _who: Admin) -> dict[str, Any]:
    audit.note(request, kind="User", name=body.name, extra={"role": body.role})
    async with db.write() as conn:
        await sessions.create_user(
            conn, name=body.name, password=body.password, role=body.role, now=_now()
        )
        user = await users.get(conn, body.name)
    assert user is not None
    return _user_document(user)


@router.get("/users", summary="List dashboard users", **openapi.answer(wire.UserList))
async def list_users(
    db: Db, _who: Admin, limit: paging.Limit = None, token: paging.Continue = None
) -> dict[str, Any]:
    """In name order; pages by name (api/paging.py)."""
    async with db.read() as conn:
        found = await users.list_all(conn)
    taken, metadata = paging.page(found, lambda u: u.name, limit=limit, token=token)
    return paging.answer([_user_document(u) for u in taken], metadata)


@router.delete(
    "/users/{name}",
    summary="Delete a user and close their sessions",
    **openapi.answer(wire.UserDeleted, 404),
)
async def delete_user(name: str, db: Db, _who: Admin) -> dict[str, Any]:
    async with db.write() as conn:
        await users.remove(conn, name)
    return {"name": name, "deleted": True}


class TenantTokenRequest(Strict):
    ttl_s: Annotated[int, Field(ge=60, le=tenant_tokens.MAX_TTL_S)] = tenant_tokens.DEFAULT_TTL_S


@router.post(
    "/tenants/{tenant}/tokens",
    summary="Mint a short-lived tenant token",
    **openapi.answer(wire.TenantToken, 404),
)
async def mint_tenant_token(
    tenant: str, request: Request, db: Db, _who: Developer, body: TenantTokenRequest | None = None
) -> dict[str, Any]:
    body = body or TenantTokenRequest()  # every field has a default: no body is fine
    async with db.read() as conn:
        stored = await repository.require(conn, "Tenant", tenant)
    token, claims = tenant_tokens.mint(
        key=request.app.state.keys.derive("tenant-tokens"),
        tenant=tenant,
        tenant_uid=stored.uid,
        now=_now(),
        ttl_s=body.ttl_s,
    )
    return {
        "tenant": tenant,
        "id": claims.id,
        "token": token,
        "expiresAt": timestamps.iso(claims.expires_at),
    }


@router.post(
    "/tenants/{tenant}/tokens/revoke",
    summary="Revoke every token of a tenant",
    **openapi.answer(wire.TenantTokensRevoked),
)
async def revoke_tenant_tokens(tenant: str, db: Db, _who: Developer) -> dict[str, Any]:
    now = _now()
    async with db.write() as conn:
        await users.revoke_tenant_tokens(conn, tenant, now=now)
    return {"tenant": tenant, "revokedBefore": timestamps.iso(now)}
