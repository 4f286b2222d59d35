"""Users and dashboard sessions: login with lockout, session cookies, CSRF tokens.

`login` checks a password against its argon2id hash; `max_failures` wrong passwords
in a row lock the user out for `lockout_s` (a correct password during the lockout
is refused too, in the words of a wrong password, so the lock cannot be probed). A
session is a random cookie value (only its SHA-256 is stored) with an expiry and a
CSRF token; `authenticate` turns a cookie back into a principal. The CSRF check
itself sits with the API's request handling (`api.security`), which knows the
method and headers.

A login link (`issue_link`, `redeem`: `armillary dashboard`) is a session row too,
short-lived and marked by its CSRF value (`LINK_MARK`): it is never a session
itself (`authenticate` refuses it), and redeeming it deletes it and opens a fresh
session, so a link works once, on whichever server replica it reaches.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from armillary import timestamps
from armillary.auth import passwords
from armillary.auth.access import STAFF, Principal, StaffRole
from armillary.errors import Invalid, NotFound, Unauthorized
from armillary.store import users
from armillary.store.database import Tx

COOKIE = "armillary_session"
CSRF_HEADER = "x-csrf-token"
MAX_COOKIE_LENGTH = 128
USER_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_USER_NAME = re.compile(USER_NAME)
LINK_MARK = "link:"
"""The CSRF column of a login link's row: no session's token starts so. After it, who
issued the link (`kind:id`, cut to fit the column)."""
LINK_MARK_CHARS = 64
LINK_REFUSED = "this login link is unknown, used or expired; run `armillary dashboard` again"
REFUSED = "wrong user name or password"
"""Every refused login's answer: a lockout is not told apart from a wrong password."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginRefused:
    """A failed login; returned, not raised, so the failure count it wrote commits."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Opened:
    cookie: str
    csrf_token: str
    expires_at: dt.datetime
    principal: Principal


def check_user_name(name: str) -> str:
    if not _USER_NAME.fullmatch(name):
        raise Invalid(
            f"name: expected 1-64 lower-case letters, digits, '.', '_' or '-', got {name!r}"
        )
    return name


async def create_user(conn: Tx, *, name: str, password: str, role: str, now: dt.datetime) -> None:
    check_user_name(name)
    if role not in STAFF:
        raise Invalid(f"role: expected one of {', '.join(STAFF)}, got {role!r}")
    passwords.check_strength(password)
    await users.add(
        conn, name=name, password_hash=passwords.hash_password(password), role=role, now=now
    )


async def login(
    conn: Tx,
    *,
    name: str,
    password: str,
    now: dt.datetime,
    ttl_s: float,
    max_failures: int,
    lockout_s: float,
) -> Opened | LoginRefused:
    """Open a session, or say why not: the same words and the same work (one argon2id
    check) whatever was wrong — an unknown name, a locked or disabled user, a wrong
    password — so neither the answer nor its time tells whether the user exists."""
    user = await users.get(conn, name)
    if user is None:
        passwords.verify(passwords.DUMMY_HASH, password)  # same time as a real check
        return LoginRefused(reason=REFUSED)
    matches = passwords.verify(user.password_hash, password)
    if user.locked_until is not None and timestamps.utc(user.locked_until) > now:
        return LoginRefused(reason=REFUSED)
    if user.disabled_at is not None or not matches:
        failures = user.failed_logins + 1
        locked = now + dt.timedelta(seconds=lockout_s) if failures >= max_failures else None
        await users.update_user(
            conn, name, failed_logins=0 if locked else failures, locked_until=locked
        )
        return LoginRefused(reason=REFUSED)
    await users.update_user(conn, name, failed_logins=0, locked_until=None)
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + dt.timedelta(seconds=ttl_s)
    await users.add_session(
        conn, id_hash=_digest(cookie), user=name, csrf_token=csrf, now=now, expires_at=expires
    )
    who = Principal(kind="user", id=name, role=_role(user.role), via_cookie=True)
    return Opened(cookie=cookie, csrf_token=csrf, expires_at=expires, principal=who)


async def authenticate(conn: Tx, cookie: str, *, now: dt.datetime) -> tuple[Principal, str]:
    """The session's principal and its CSRF token, or `Unauthorized`."""
    if len(cookie) > MAX_COOKIE_LENGTH:
        raise Unauthorized("malformed session cookie")
    session = await users.find_session(conn, _digest(cookie))
    if session is None or timestamps.utc(session.expires_at) <= now:
        raise Unauthorized("session expired or unknown; log in again")
    if session.csrf_token.startswith(LINK_MARK):
        raise Unauthorized("a login link is not a session; open it in the dashboard")
    user = await users.get(conn, session.user)
    if user is None or user.disabled_at is not None:
        raise Unauthorized("session expired or unknown; log in again")
    who = Principal(kind="user", id=user.name, role=_role(user.role), via_cookie=True)
    return who, session.csrf_token


async def issue_link(
    conn: Tx,
    *,
    user: str,
    now: dt.datetime,
    ttl_s: float,
    create: bool = False,
    issuer: str = "",
) -> tuple[str, dt.datetime, bool]:
    """A one-time login link's code for `user`, when it expires, and whether the user
    was created: a missing user is made an admin whose password nobody knows when
    `create` says so (the local admin of `armillary up` has a token, not a password;
    it logs in by link), else `NotFound` (a mistyped name makes no admin). `issuer`
    (who asked) is kept with the link, for the audit of its use."""
    check_user_name(user)
    created = await users.get(conn, user) is None
    if created and not create:
        raise NotFound(f"no dashboard user {user!r}; pass create (`--create`) to make one")
    if created:
        unknown = secrets.token_urlsafe(32)
        hashed = passwords.hash_password(unknown)
        await users.add(conn, name=user, password_hash=hashed, role="admin", now=now)
    code = secrets.token_urlsafe(32)
    expires = now + dt.timedelta(seconds=ttl_s)
    mark = (LINK_MARK + issuer)[:LINK_MARK_CHARS]
    await users.add_session(
        conn, id_hash=_digest(code), user=user, csrf_token=mark, now=now, expires_at=expires
    )
    return code, expires, created


async def is_link(conn: Tx, code: str) -> bool:
    """Whether `code` is a login link's (read only: a wrong code takes no write lock)."""
    if len(code) > MAX_COOKIE_LENGTH:
        return False
    found = await users.find_session(conn, _digest(code))
    return found is not None and found.csrf_token.startswith(LINK_MARK)


def link_issuer(session_mark: str) -> str:
    """Who issued a login link, from its row's mark (`issue_link`)."""
    return session_mark.removeprefix(LINK_MARK)


async def redeem(
    conn: Tx, code: str, *, now: dt.datetime, ttl_s: float
) -> tuple[Opened, str] | LoginRefused:
    """A fresh session for the user a login link names and who issued the link, or
    why not. The link is taken (deleted and read in one statement), so of two
    redeeming it at once exactly one gets it; a link found is used up whatever the
    outcome, so the refusal is returned, not raised."""
    found = None
    if len(code) <= MAX_COOKIE_LENGTH:
        found = await users.take_session(conn, _digest(code), prefix=LINK_MARK)
    if found is None:
        return LoginRefused(reason=LINK_REFUSED)
    user = await users.get(conn, found.user)
    if timestamps.utc(found.expires_at) <= now or user is None or user.disabled_at is not None:
        return LoginRefused(reason=LINK_REFUSED)
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + dt.timedelta(seconds=ttl_s)
    await users.add_session(
        conn, id_hash=_digest(cookie), user=user.name, csrf_token=csrf, now=now, expires_at=expires
    )
    who = Principal(kind="user", id=user.name, role=_role(user.role), via_cookie=True)
    opened = Opened(cookie=cookie, csrf_token=csrf, expires_at=expires, principal=who)
    return opened, link_issuer(found.csrf_token)


async def logout(conn: Tx, cookie: str) -> None:
    await users.remove_session(conn, _digest(cookie))


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _role(role: str) -> StaffRole:
    found = next((r for r in STAFF if r == role), None)
    if found is None:
        raise Unauthorized(f"user has an unknown role {role!r}")
    return found
