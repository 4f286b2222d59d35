"""`POST /webhooks/{source}`: receive a sender's event, verify it, store it, route it.

Outside /api/v1 and without a bearer token: the signature over the raw body is the
sender's credential (`security.SIGNED`). In order: the `WebhookSource` (404), the
body within its `max_body_bytes` (413, before more is read), the signature
(`ingress.verify`; 401 naming the header), handshakes answered (Slack's challenge,
GitHub and PagerDuty pings), the source's rate limit and then its per-tenant one
(429 with Retry-After; checked after the signature, so nobody without the secret can
spend a sender's budget), routing (`ingress.routing`), and the event with its audit
row — and, for a routed event, the run of the tenant's agent it starts
(`store.agent_runs`) — in one write transaction.

Invariant: a 2xx is sent only after that transaction committed, so an acknowledged
event, and the run it starts, survive a crash of the server the moment after. A
delivery seen before (same delivery id, or for senders whose id is unsigned or absent
the same body) answers 200 `{"duplicate": true}` and stores nothing new (no second
run). Refusals are logged, not stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from armillary.api import problems, ratelimit
from armillary.api.routes.secrets import Vaulted
from armillary.api.security import Db
from armillary.auth import secrets
from armillary.errors import Issue, TooLarge
from armillary.ingress import routing, verify
from armillary.resources import webhook
from armillary.resources.webhook import WebhookSource, WebhookSourceSpec
from armillary.store import agent_runs, audit, events, repository
from armillary.store.database import Database

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("armillary.webhooks")

KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-slack-retry-num",
    "x-slack-retry-reason",
    "webhook-id",
    "svix-id",
)
"""The request headers stored with an event: what says what it is, never a signature."""

AGENT_COMPONENT = "agent"
"""The component of the routed tenant's stack that a routed event's run calls."""

UNSIGNED_IDS = frozenset({"github"})
"""Senders whose delivery id the signature does not cover: replay is keyed on the body too."""


class Limits:
    """Token buckets per source and per (source, tenant), made from the source's
    `rate_limit` / `tenant_rate_limit`; a changed limit starts a fresh bucket."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[str, tuple[webhook.RateLimit, ratelimit.Buckets]] = {}

    def wait_s(self, key: str, limit: webhook.RateLimit | None) -> float | None:
        """None if `key` may go on (or has no limit), else seconds until it may."""
        if limit is None:
            return None
        held = self._held.get(key)
        if held is None or held[0] != limit:
            buckets = ratelimit.Buckets(rate_per_s=limit.per_second, burst=limit.burst)
            held = (limit, buckets)
            self._held[key] = held
        return held[1].take(key, self._clock())


def limits(request: Request) -> Limits:
    found: Limits | None = getattr(request.app.state, "webhook_limits", None)
    if found is None:
        found = request.app.state.webhook_limits = Limits()
    return found


@router.post(
    "/webhooks/{source}",
    summary="Receive an event from a webhook sender (authenticated by its signature)",
    status_code=202,
)
async def receive(source: str, request: Request, db: Db, vault: Vaulted) -> Response:
    received_at = dt.datetime.now(dt.UTC)
    spec, keys = await _source(db, vault, source)
    body = await _body(request, max_bytes=spec.max_body_bytes)
    try:
        verified = verify.verify(
            spec.type,
            headers=dict(request.headers),
            body=body,
            secrets=keys,
            now=received_at,
            tolerance_s=spec.tolerance_s,
            hmac_settings=spec.hmac,
        )
    except verify.Refused as exc:
        log.warning("webhook %s refused: %s", source, exc)
        return problems.problem(401, exc.title, str(exc))
    if verified.handshake is not None:
        if spec.type == "slack":
            return JSONResponse({"challenge": verified.handshake})
        return JSONResponse({"handshake": verified.handshake})
    refused = _limited(limits(request), source, spec.rate_limit)
    if refused is not None:
        return refused
    document = routing.document(body, content_type=request.headers.get("content-type"))
    found = routing.key(spec.type, document, pointer=spec.routing.pointer)
    async with db.read() as conn:
        found_tenants = await repository.list_kind(conn, "Tenant")
    tenants = {t.name: t.spec.get("routing", {}) for t in found_tenants}
    route = routing.tenant(found, key_space=spec.routing.key_space, tenants=tenants)
    if route.tenant is not None:
        refused = _limited(limits(request), f"{source}/{route.tenant}", spec.tenant_rate_limit)
        if refused is not None:
            return refused
    delivery = _delivery(source, request, body, verified, route, received_at)
    recorded = await _store(db, request, delivery, route)
    if recorded.duplicate:
        return JSONResponse({"duplicate": True, "event": recorded.id}, status_code=200)
    answer = {"event": recorded.id, "state": route.state}
    if recorded.run is not None:
        answer["run"] = recorded.run
    return JSONResponse(answer, status_code=202)


async def _source(
    db: Database, vault: secrets.Vault, name: str
) -> tuple[WebhookSourceSpec, list[str]]:
    """The source's spec and its secrets' values; 404 when there is no such source."""
    async with db.read() as conn:
        stored = await repository.require(conn, "WebhookSource", name)
        spec = WebhookSource.model_validate(stored.document()).spec
        refs = [(ref.name, ref.key) for ref in spec.secrets]
        keys, missing = await secrets.values_of(conn, vault, refs)
    if missing:  # names only: the values never reach a log
        log.error("webhook %s: secret keys not found or unreadable: %s", name, ", ".join(missing))
    return spec, keys


async def _body(request: Request, *, max_bytes: int) -> bytes:
    """The raw body, read no further than `max_bytes`; `TooLarge` beyond it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, max_bytes: int) -> TooLarge:
    message = f"the body is {size} bytes or more; this source's max_body_bytes is {max_bytes}"
    return TooLarge([Issue(path="body", message=message)])


def _limited(held: Limits, key: str, limit: webhook.RateLimit | None) -> Response | None:
    wait_s = held.wait_s(key, limit)
    if wait_s is None:
        return None
    retry = str(max(1, math.ceil(wait_s)))
    log.warning("webhook %s rate limited; retry after %s s", key, retry)
    detail = f"rate limit of {key} reached; retry after {retry}s"
    return problems.problem(429, "Too many requests", detail, headers={"Retry-After": retry})


def _delivery(
    source: str,
    request: Request,
    body: bytes,
    verified: verify.Verified,
    route: routing.Route,
    received_at: dt.datetime,
) -> events.Delivery:
    digest = hashlib.sha256(body).hexdigest()
    by_body = verified.kind in UNSIGNED_IDS or verified.delivery_id is None
    return events.Delivery(
        source=source,
        delivery_id=_clip(verified.delivery_id, 512),
        replay_hash=digest if by_body else None,
        body_sha256=digest,
        received_at=received_at,
        event_type=_clip(verified.event_type, 253),
        tenant=route.tenant,
        routing_key=route.key,
        state=route.state,
        content_type=_clip(request.headers.get("content-type"), 255),
        headers={k: v[:512] for k in KEPT_HEADERS if (v := request.headers.get(k)) is not None},
        body=body,
    )


def _clip(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """What `_store` wrote: the event (or the earlier one it repeats) and its run."""

    id: str
    duplicate: bool
    run: str | None


async def _store(
    db: Database, request: Request, delivery: events.Delivery, route: routing.Route
) -> Stored:
    """Record the event, its agent run when it is routed, and its audit row in one
    transaction, committed on return."""
    async with db.write() as conn:
        recorded = await events.record(conn, delivery)
        run_id = None
        if delivery.tenant is not None and not recorded.duplicate:
            queued = agent_runs.Request(
                tenant=delivery.tenant,
                component=AGENT_COMPONENT,
                input={},
                requested_by=f"webhook:{delivery.source}",
                max_attempts=request.app.state.settings.agent_run_max_attempts,
                event_id=recorded.id,
            )
            run_id = await agent_runs.create(conn, queued, now=delivery.received_at)
        detail: dict[str, Any] = {
            "event": recorded.id,
            "deliveryId": delivery.delivery_id,
            "eventType": delivery.event_type,
            "routingKey": route.key,
        }
        if run_id is not None:
            detail["run"] = run_id
        if len(route.claimants) > 1:
            detail["ambiguous"] = list(route.claimants)
        await audit.record(
            conn,
            audit.Entry(
                at=delivery.received_at,
                verb="receive",
                outcome="duplicate" if recorded.duplicate else delivery.state,
                principal=f"webhook:{delivery.source}",
                principal_kind="webhook",
                tenant=delivery.tenant,
                path=request.url.path,
                kind="WebhookSource",
                name=delivery.source,
                status=200 if recorded.duplicate else 202,
                source=request.client.host if request.client else None,
                request_id=getattr(request.state, "request_id", None),
                detail=detail,
            ),
        )
    return Stored(id=recorded.id, duplicate=recorded.duplicate, run=run_id)
