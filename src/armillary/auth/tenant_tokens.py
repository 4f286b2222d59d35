"""Tenant tokens: short-lived, signed, scoped to one tenant.

A tenant token reads `armt_<JWT>` (HS256 with a key derived from the server's secret
key for this purpose only). Its claims name the tenant, the tenant's uid (so a
tenant deleted and created again under the same name does not inherit old tokens),
when it was issued and when it expires (15 minutes by default, at most a day).
Nothing is stored per token: revoking a tenant's tokens records a moment, and every
token issued before it is refused (see `store.tenant_tokens`).

Pure: the key and the clock are passed in.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import jwt

from armillary.errors import Invalid, Unauthorized

PREFIX = "armt_"
ISSUER = "armillary"
DEFAULT_TTL_S = 15 * 60
MAX_TTL_S = 24 * 3600
MAX_TOKEN_LENGTH = 2048
_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True, kw_only=True)
class Claims:
    id: str
    tenant: str
    tenant_uid: str
    issued_at: dt.datetime
    expires_at: dt.datetime


def mint(
    *, key: bytes, tenant: str, tenant_uid: str, now: dt.datetime, ttl_s: int = DEFAULT_TTL_S
) -> tuple[str, Claims]:
    """A new token for `tenant` and its claims."""
    if not 60 <= ttl_s <= MAX_TTL_S:
        raise Invalid(f"ttl_s: expected 60 to {MAX_TTL_S} seconds, got {ttl_s}")
    issued = now
    claims = Claims(
        id=secrets.token_hex(8),
        tenant=tenant,
        tenant_uid=tenant_uid,
        issued_at=issued,
        expires_at=issued.replace(microsecond=0) + dt.timedelta(seconds=ttl_s),
    )
    payload = {
        "iss": ISSUER,
        "sub": f"tenant:{tenant}",
        "jti": claims.id,
        "tenant": tenant,
        "tuid": tenant_uid,
        "iat": int(issued.timestamp()),
        "iat_us": int(issued.timestamp() * 1_000_000),  # revocation compares finer than 1 s
        "exp": int(claims.expires_at.timestamp()),
    }
    return PREFIX + jwt.encode(payload, key, algorithm=_ALGORITHM), claims


def verify(token: str, *, keys: list[bytes], now: dt.datetime) -> Claims:
    """The claims of a valid token, or `Unauthorized` saying why not. `keys`: the
    current signing key first, then the previous ones (key rotation)."""
    if len(token) > MAX_TOKEN_LENGTH or not token.startswith(PREFIX):
        raise Unauthorized("not a tenant token")
    body = token.removeprefix(PREFIX)
    for key in keys:
        try:
            payload = jwt.decode(
                body,
                key,
                algorithms=[_ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "jti", "sub"], "verify_exp": False},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed tenant token: {exc}") from None
        return _claims(payload, now=now)
    raise Unauthorized("tenant token signature does not match")


def _claims(payload: dict[str, object], *, now: dt.datetime) -> Claims:
    try:
        claims = Claims(
            id=str(payload["jti"]),
            tenant=str(payload["tenant"]),
            tenant_uid=str(payload["tuid"]),
            issued_at=dt.datetime.fromtimestamp(int(str(payload["iat_us"])) / 1_000_000, dt.UTC),
            expires_at=dt.datetime.fromtimestamp(int(str(payload["exp"])), dt.UTC),
        )
    except (KeyError, ValueError) as exc:
        raise Unauthorized(f"malformed tenant token: missing or bad claim {exc}") from None
    if claims.expires_at <= now:
        raise Unauthorized("tenant token has expired")
    return claims
