"""`POST /webhooks/{source}`: receive a sender's event, verify it, store it, route it.

Outside /api/v1 and without a bearer token: the signature over the raw body is the
sender's credential (`security.SIGNED`). In order: the `WebhookSource` (404), the
body within its `max_body_bytes` (413, before more is read), the signature
(`ingress.verify`; 401 naming the header), handshakes answered (Slack's challenge,
GitHub and PagerDuty pings), the source's rate limit and then its per-tenant one
(429 with Retry-After; checked after the signature, so nobody without the secret can
spend a sender's budget), routing (`ingress.routing`), and the event with its audit
row — and, for a routed event, the run of the tenant's agent it starts — committed
by the intake (`ingress.intake`), in one write transaction with the deliveries that
arrived meanwhile. Sources, secrets and routing come from the in-memory catalog
(`ingress.catalog`), so a delivery reads nothing from the store.

Two doors, one handler (`answer`): `Front`, the ASGI app the server runs in front of
FastAPI, answers every POST here before FastAPI's per-request layers; the FastAPI
route documents the endpoint, answers other methods with 405 and serves a POST that
reaches it the same way.

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
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter
from starlette.types import Receive, Scope, Send

from armillary import ids, logs, metrics, wire
from armillary.api import audit as audit_log
from armillary.api import headers as security_headers
from armillary.api import openapi, problems, ratelimit
from armillary.errors import ArmillaryError, Issue, NotFound, RateLimited, TooLarge
from armillary.ingress import intake, routing, verify
from armillary.resources import webhook
from armillary.store import events

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


def limits(state: Any) -> Limits:
    found: Limits | None = getattr(state, "webhook_limits", None)
    if found is None:
        found = state.webhook_limits = Limits()
    return found


@dataclass(frozen=True, slots=True)
class Answer:
    """What to answer a delivery: status, JSON document (a problem from 400 on), headers."""

    status: int
    document: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def count(source: str, result: Answer) -> None:
    """`armillary_webhook_deliveries_total` for one answer. A source that does not
    exist is counted under the empty name: a label a sender chooses is unbounded."""
    if not metrics.enabled:
        return
    outcome = _outcome(result)
    key = ("" if outcome == "unknown_source" else source, outcome)
    child = _DELIVERIES.get(key)
    if child is None:
        child = _DELIVERIES[key] = metrics.WEBHOOK_DELIVERIES.labels(*key)
    child.inc()


_DELIVERIES: dict[tuple[str, str], Counter] = {}
"""`armillary_webhook_deliveries_total`'s children, looked up once per source and outcome."""


def _outcome(result: Answer) -> str:
    status = result.status
    if status == 202:
        return "unrouted" if result.document.get("state") == "unrouted" else "accepted"
    if status == 200:
        return "duplicate" if result.document.get("duplicate") else "handshake"
    return {401: "refused", 429: "rate_limited", 404: "unknown_source"}.get(status, "error")


class ClientGone(Exception):
    """The sender closed the connection before its body arrived: nobody to answer."""


BodyReader = Callable[[int], Awaitable[bytes]]
"""Reads the whole body, at most the given number of bytes (`TooLarge` beyond)."""


async def answer(
    state: Any,
    source: str,
    headers: Mapping[str, str],
    read_body: BodyReader,
    *,
    path: str,
    client: str | None,
    request_id: str | None,
) -> Answer:
    """Everything `POST /webhooks/{source}` does, whichever door it came in by
    (`headers`: names in lower case). Raises `ArmillaryError`s (404, 413, 503)."""
    received_at = dt.datetime.now(dt.UTC)
    known = await state.catalog.snapshot()
    found_source = known.sources.get(source)
    if found_source is None:
        raise NotFound(f"WebhookSource {source!r} not found")
    spec = found_source.spec
    body = await read_body(spec.max_body_bytes)
    try:
        verified = verify.verify(
            spec.type,
            headers=headers,
            body=body,
            secrets=found_source.keys,
            now=received_at,
            tolerance_s=spec.tolerance_s,
            hmac_settings=spec.hmac,
        )
    except verify.SignatureRefused as exc:
        log.warning("webhook %s refused: %s", source, exc)
        return Answer(401, problems.document(401, exc.title, str(exc)))
    if verified.handshake is not None:
        if spec.type == "slack":
            return Answer(200, {"challenge": verified.handshake})
        return Answer(200, {"handshake": verified.handshake})
    held = limits(state)
    refused = _limited(held, source, spec.rate_limit)
    if refused is not None:
        return refused
    document = routing.document(body, content_type=headers.get("content-type"))
    found = routing.key(spec.type, document, pointer=spec.routing.pointer)
    route = known.routes.route(found, key_space=spec.routing.key_space)
    if route.tenant is not None:
        refused = _limited(held, f"{source}/{route.tenant}", spec.tenant_rate_limit)
        if refused is not None:
            return refused
    item = intake.Item(
        delivery=_delivery(source, headers, body, verified, route, received_at),
        claimants=route.claimants,
        path=path,
        client=client,
        request_id=request_id,
        max_attempts=state.settings.agent_run_max_attempts,
    )
    recorded = await state.intake.submit(item)
    about = logs.fields(tenant=route.tenant, event_id=recorded.id, run_id=recorded.run)
    if recorded.duplicate:
        log.info("webhook %s: a repeat of event %s", source, recorded.id, extra=about)
        return Answer(200, {"duplicate": True, "event": recorded.id})
    log.info("webhook %s: event %s stored (%s)", source, recorded.id, route.state, extra=about)
    stored: dict[str, Any] = {"event": recorded.id, "state": route.state}
    if recorded.run is not None:
        stored["run"] = recorded.run
    return Answer(202, stored)


@router.post(
    "/webhooks/{source}",
    summary="Receive an event from a webhook sender (authenticated by its signature)",
    status_code=202,
    response_model=wire.WebhookAnswer,
    responses={
        200: {
            "description": "A handshake, or a duplicate of a delivery seen before",
            "model": wire.WebhookAnswer,
        },
        **openapi.declared(401, 404, 408, 413, 429, 503),
    },
)
async def receive(source: str, request: Request) -> Response:
    """This route documents the endpoint and answers what `Front` passes on to the
    router; `Front` answers a POST before the router sees it."""

    async def read_body(max_bytes: int) -> bytes:
        return await _body(request, max_bytes=max_bytes)

    result = await answer(
        request.app.state,
        source,
        request.headers,
        read_body,
        path=request.url.path,
        client=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None),
    )
    count(source, result)
    media = problems.MEDIA_TYPE if result.status >= 400 else None
    return JSONResponse(
        result.document, status_code=result.status, headers=result.headers, media_type=media
    )


class Front:
    """The ASGI app in front of the FastAPI app `app`: `POST /webhooks/<source>` is
    answered here, without FastAPI's and the API's per-request layers, which are
    built for authenticated API calls and cost a delivery more than verifying and
    storing it does. It does for these requests what those layers do for every
    other: the X-Request-ID (`audit.RequestId`), the security headers
    (`headers.SecurityHeaders`), the body limit (the smaller of the server's and the
    source's), problem documents for errors, a 500 for anything unexpected (logged).
    Everything else, the lifespan included, goes on to `app`. `limits.BodyGuard`,
    around this door, bounds the body in time and against the bytes in flight: its
    refusal (`problems.Refused`) comes out of the body's reader and is answered here."""

    def __init__(self, app: FastAPI, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        source = path[len(PREFIX) :]
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not path.startswith(PREFIX)
            or not source
            or "/" in source
        ):
            await self.app(scope, receive, send)
            return
        # ASGI gives header names in lower case.
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        given = audit_log.accepted_request_id(headers.get("x-request-id"))
        request_id = given or ids.new_hex()  # time-ordered: appended to the audit index
        bound = audit_log.CURRENT_REQUEST.set(request_id)
        try:
            result = await answer(
                self.app.state,
                source,
                headers,
                self._reader(headers, receive),
                path=path,
                client=(scope.get("client") or (None, 0))[0],
                request_id=request_id,
            )
        except ClientGone:
            return
        except (ArmillaryError, problems.Refused) as exc:
            error = exc.error if isinstance(exc, problems.Refused) else exc
            status, document, extra = problems.of_error(error)
            result = Answer(status, document, extra)
        except Exception:
            log.exception("webhook %s: unhandled error", source)
            result = Answer(500, problems.document(500, "Internal error", "see the server log"))
        finally:
            audit_log.CURRENT_REQUEST.reset(bound)
        count(source, result)
        await _send(send, result, request_id)

    def _reader(self, headers: Mapping[str, str], receive: Receive) -> BodyReader:
        async def read_body(source_max: int) -> bytes:
            max_bytes = min(source_max, self.max_body_bytes)
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(int(declared), max_bytes)
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(size, max_bytes)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)

        return read_body


PREFIX = "/webhooks/"


async def _send(send: Send, result: Answer, request_id: str) -> None:
    body = orjson.dumps(result.document)
    media = problems.MEDIA_TYPE if result.status >= 400 else "application/json"
    raw = [
        (b"content-type", media.encode()),
        (b"content-length", str(len(body)).encode()),
        *[
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in result.headers.items()
        ],
        (audit_log.HEADER, request_id.encode()),
        *security_headers.COMMON,
        (b"content-security-policy", security_headers.API_CSP),
    ]
    await send({"type": "http.response.start", "status": result.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


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


def _limited(held: Limits, key: str, limit: webhook.RateLimit | None) -> Answer | None:
    wait_s = held.wait_s(key, limit)
    if wait_s is None:
        return None
    retry = problems.retry_after(wait_s)
    log.warning("webhook %s rate limited; retry after %s s", key, retry)
    limited = RateLimited(f"rate limit of {key} reached; retry after {retry}s", delay_s=wait_s)
    return Answer(*problems.of_error(limited))


def _delivery(
    source: str,
    headers: Mapping[str, str],
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
        content_type=_clip(headers.get("content-type"), 255),
        headers={k: v[:512] for k in KEPT_HEADERS if (v := headers.get(k)) is not None},
        body=body,
    )


def _clip(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]
