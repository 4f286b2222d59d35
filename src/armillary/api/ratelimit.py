"""Rate limits on the API: token buckets per caller and per client address.

`Buckets.take(key, now_s)` is the pure part: each key holds up to `burst` tokens,
refilled at `rate_per_s`; a request takes one, and a key with none left is told how
long until it has one (`Retry-After`). The number of keys is bounded: the least
recently used bucket that is full anyway is forgotten first, so a flood of new
addresses cannot grow memory without end.

`RateLimit` is the ASGI middleware: every request under /api/ takes from the bucket
of its credential (the Authorization header or session cookie, hashed — no lookup
is needed to tell callers apart) and from the bucket of its client address; login
attempts take from a much smaller per-address bucket. An exhausted bucket answers
429 with `Retry-After` (a `RateLimited` problem document, built by api/problems.py),
before the request reaches any handler.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from armillary.api import problems
from armillary.errors import RateLimited

MAX_KEYS = 50_000
LOGIN_PATH = "/api/v1/auth/login"
REDEEM_PATH = "/api/v1/auth/redeem"
"""A login link's code is guessed as a password would be: the same bucket."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float


class Buckets:
    """Token buckets by key."""

    def __init__(self, *, rate_per_s: float, burst: int, max_keys: int = MAX_KEYS) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now_s: float) -> float | None:
        """Take one token: None if granted, else the seconds until one is available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), at_s=now_s)
            self._buckets[key] = bucket
            self._evict()
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now_s - bucket.at_s)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
            bucket.at_s = now_s
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate_per_s

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self) -> None:
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)


class RateLimit:
    """ASGI middleware applying `Buckets` to API requests."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self._clock = clock
        self._callers = Buckets(rate_per_s=rate_per_s, burst=burst)
        # Addresses get room for several callers behind one NAT; logins get little.
        self._addresses = Buckets(rate_per_s=rate_per_s * 4, burst=burst * 4)
        self._logins = Buckets(rate_per_s=0.5, burst=30)  # per address; lockout is per user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/"):
            await self.app(scope, receive, send)
            return
        now_s = self._clock()
        address = (scope.get("client") or ("unknown", 0))[0]
        waits = [self._addresses.take(f"ip:{address}", now_s)]
        credential = _credential(scope)
        if credential is not None:
            waits.append(self._callers.take(credential, now_s))
        if path in (LOGIN_PATH, REDEEM_PATH):
            waits.append(self._logins.take(f"login:{address}", now_s))
        wait_s = max((w for w in waits if w is not None), default=None)
        if wait_s is None:
            await self.app(scope, receive, send)
            return
        await problems.response(limited(wait_s))(scope, receive, send)


def _credential(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name in (b"authorization", b"cookie"):
            return "cred:" + hashlib.sha256(value).hexdigest()[:24]
    return None


def limited(wait_s: float) -> RateLimited:
    """The error answering a request `wait_s` seconds before its bucket has a token."""
    return RateLimited(
        f"rate limit reached; retry after {problems.retry_after(wait_s)}s", delay_s=wait_s
    )
