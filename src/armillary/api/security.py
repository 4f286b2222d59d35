"""Authentication and authorization of API requests.

Every route under /api/v1 declares who may call it with an `Allow` dependency (or is
listed in `PUBLIC`; webhook ingress, authenticated by signatures, in `SIGNED`); the
authorization matrix test walks the route table and fails for a route with neither.
A caller is identified, once per request, by:

- `Authorization: Bearer arm_…` — an API key (`auth.tokens`);
- `Authorization: Bearer armt_…` — a tenant token (`auth.tenant_tokens`), valid only
  while its tenant exists with the same uid and its tokens were not revoked since;
- the `armillary_session` cookie — a dashboard session (`auth.sessions`); every
  request that is not GET/HEAD/OPTIONS must then carry the session's CSRF token in
  `X-CSRF-Token`. Bearer requests need none: a browser never adds them on its own.

The principal is kept on `request.state.principal` for the audit log. For HTTP
requests under /api/, `identify` first runs in `api/gate.py`, before anything reads
the body; the route's `Allow` then finds the principal there (one lookup a request).

A streamed answer (replica logs followed, exec) can outlive the moment its caller
was identified: `until_refused` re-checks the same credential whenever the change
feed says a credential or a tenant changed, and every `ARMILLARY_STREAM_RECHECK_S`
for what no write announces (expiry), and returns once it is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from armillary.api import problems
from armillary.auth import access, sessions, tenant_tokens, tokens
from armillary.auth.access import StaffRole, TenantScope
from armillary.auth.keys import KeyRing
from armillary.errors import Forbidden, NotFound, Unauthorized
from armillary.store import feed, repository, users
from armillary.store.database import Database, Tx

log = logging.getLogger("armillary.api.security")

PUBLIC = frozenset(
    {
        "/healthz",
        "/readyz",
        "/api/v1/openapi.json",
        "/api/v1/docs",
        "/api/v1/docs/swagger-ui-bundle.js",
        "/api/v1/docs/swagger-ui.css",
        "/api/v1/docs/favicon.png",
        "/docs/oauth2-redirect",
        "/api/v1/auth/login",
        "/api/v1/auth/redeem",
        "/",
        "/ui/{asset}",
    }
)
"""Routes anyone may call; every other route has an `Allow` or is `SIGNED`."""

SIGNED = frozenset({"/webhooks/{source}"})
"""Routes whose caller proves itself by signing the body (webhook ingress, checked by
`ingress.verify` with the source's secrets), not with a token: no `Allow`, and a
bearer token grants nothing there."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TENANT_TOKEN_PURPOSE = "tenant-tokens"  # noqa: S105 (a label, not a secret)


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` in a worker
# thread, two thread switches per request for an attribute read.
async def database(request: HTTPConnection) -> Database:
    db: Database = request.app.state.db
    return db


async def key_ring(request: HTTPConnection) -> KeyRing:
    ring: KeyRing = request.app.state.keys
    return ring


async def identify(request: Request) -> access.Principal:
    """Who is calling (cached for the request), or `Unauthorized` saying why not."""
    known: access.Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    who = await authenticate(request)
    request.state.principal = who
    return who


async def authenticate(request: HTTPConnection) -> access.Principal:
    """Who the request's (or WebSocket handshake's) credential names now, read afresh
    from the store. A handshake has no method: it counts as a GET (it changes nothing)."""
    now = dt.datetime.now(dt.UTC)
    db = await database(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value or " " in value:
            raise Unauthorized("expected 'Authorization: Bearer <token>'")
        async with db.read() as conn:
            if value.startswith(tenant_tokens.PREFIX):
                who = await _tenant_principal(conn, await key_ring(request), value, now=now)
            else:
                who = await tokens.authenticate(conn, value, now=now)
    else:
        cookie = request.cookies.get(sessions.COOKIE)
        if cookie is None:
            raise Unauthorized("missing 'Authorization: Bearer <token>' header")
        async with db.read() as conn:
            who, csrf = await sessions.authenticate(conn, cookie, now=now)
        method = str(request.scope.get("method", "GET"))
        if method not in SAFE_METHODS and not sessions.csrf_matches(
            csrf, request.headers.get(sessions.CSRF_HEADER)
        ):
            raise Forbidden("missing or wrong X-CSRF-Token for a request made with a session")
    return who


_ENDS_CREDENTIALS = frozenset({feed.CREDENTIAL, "Tenant", feed.RESYNC})
"""Feed kinds after which a credential may be refused: revocations, users and sessions
(`feed.CREDENTIAL`), and tenants (a tenant token or key dies with its tenant)."""


async def until_refused(request: HTTPConnection, *, recheck_s: float) -> str:
    """Wait until the credential `request` was identified with is refused (revoked,
    expired, its tenant or user gone, its role changed); why. Re-checks when the feed
    announces a change that may end it, and every `recheck_s` seconds."""
    db = await database(request)
    first: access.Principal | None = getattr(request.state, "principal", None)
    wake = asyncio.Event()

    def heard(change: feed.Change) -> None:
        if change.kind in _ENDS_CREDENTIALS:
            wake.set()

    stop = db.feed.watch(heard)
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=recheck_s)
            wake.clear()
            try:
                now = await authenticate(request)
            except (Unauthorized, Forbidden) as exc:
                return str(exc)
            except Exception:  # a store hiccup: the stream goes on, the next check decides
                log.warning("could not re-check a stream's credential", exc_info=True)
                continue
            if first is not None and now.role != first.role:
                return f"the caller's role changed from {first.role} to {now.role}"
    finally:
        stop()


async def _tenant_principal(
    conn: Tx, ring: KeyRing, value: str, *, now: dt.datetime
) -> access.Principal:
    claims = tenant_tokens.verify(value, keys=ring.derive_all(TENANT_TOKEN_PURPOSE), now=now)
    tenant = await repository.get(conn, "Tenant", claims.tenant)
    if tenant is None or tenant.uid != claims.tenant_uid:
        raise Unauthorized("the tenant this token was issued for no longer exists")
    revoked = await users.tenant_tokens_revoked_before(conn, claims.tenant)
    if revoked is not None and claims.issued_at <= revoked.replace(tzinfo=dt.UTC):
        raise Unauthorized("this tenant's tokens have been revoked")
    return access.Principal(kind="tenant", id=claims.id, role="tenant", tenant=claims.tenant)


class Allow:
    """A route's access rule as a dependency: identifies the caller, then applies
    `access.decide`. Answers 401 (who?), 403 (not allowed) or 404 (another tenant's)."""

    def __init__(
        self, role: StaffRole | None, *, tenant: TenantScope = "none", node: bool = False
    ) -> None:
        self.rule = access.Rule(role=role, tenant=tenant, node=node)

    async def __call__(self, request: Request) -> access.Principal:
        who = await identify(request)
        decision = access.decide(
            self.rule, who, path=request.path_params, query=request.query_params
        )
        if decision.allowed:
            return who
        if decision.status == 404:
            raise NotFound(problems.HIDDEN)
        raise Forbidden(decision.reason)


def may_write(who: access.Principal, kinds: list[str]) -> None:
    """403 unless `who` may write every kind in `kinds` (some need admin)."""
    decision = access.may_write(who, kinds)
    if not decision.allowed:
        raise Forbidden(decision.reason)


def visible(who: access.Principal, tenant: str | None) -> None:
    """For handlers of `tenant="handler"` routes: 404 unless `who` may see `tenant`'s."""
    if not who.sees(tenant):
        raise NotFound(problems.HIDDEN)


Db = Annotated[Database, Depends(database)]
Viewer = Annotated[access.Principal, Depends(Allow("viewer"))]
Developer = Annotated[access.Principal, Depends(Allow("developer"))]
Admin = Annotated[access.Principal, Depends(Allow("admin"))]
TenantPath = Annotated[access.Principal, Depends(Allow("viewer", tenant="path"))]
"""Viewers, and tenant tokens when the path's `{tenant}` is theirs."""
TenantQuery = Annotated[access.Principal, Depends(Allow("viewer", tenant="query"))]
"""Viewers, and tenant tokens when `?tenant=` names theirs."""
TenantChecked = Annotated[access.Principal, Depends(Allow("viewer", tenant="handler"))]
"""Viewers, and tenant tokens for what the handler finds to be theirs (`visible`)."""

Principal = Viewer
"""Any authenticated staff caller (viewer or above); routes should name their rule."""
