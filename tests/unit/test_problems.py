"""Every error answer of the API is one problem document, built one way.

The rate limit (429) and the body limit (413) answer from ASGI middlewares, before
any route; a `TemporaryError` raised in a route answers 503. All of them carry the
same fields as every other error, and the retryable ones say when to retry.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from armillary.api import problems
from armillary.api.limits import BodyLimit
from armillary.api.ratelimit import RateLimit
from armillary.errors import (
    ArmillaryError,
    NotFound,
    RateLimited,
    TemporaryError,
    TooLarge,
)

PROBLEM_FIELDS = {"type", "title", "status", "detail"}


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _call(
    app: Any, *, path: str = "/api/v1/nodes", headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One request through the ASGI `app`: status, headers, parsed body."""
    sent: list[Message] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": headers or [],
        "client": ("192.0.2.7", 4242),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    answer_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], answer_headers, json.loads(body)


def test_a_rate_limited_request_answers_a_problem_document_with_retry_after() -> None:
    now_s = [100.0]
    app = RateLimit(_ok, rate_per_s=0.25, burst=2, clock=lambda: now_s[0])
    token = [(b"authorization", b"Bearer a")]
    assert [_call(app, headers=token)[0] for _ in range(2)] == [200, 200]
    status, headers, body = _call(app, headers=token)
    assert status == 429
    assert headers["content-type"] == problems.MEDIA_TYPE
    assert headers["retry-after"] == "4"  # one token at 0.25/s
    assert set(body) == PROBLEM_FIELDS
    expected_status, expected_body, expected_headers = problems.of_error(
        RateLimited("rate limit reached; retry after 4s", delay_s=4.0)
    )
    assert (status, body) == (expected_status, expected_body)
    assert expected_headers == {"Retry-After": "4"}
    now_s[0] += 4.0  # a token is back
    assert _call(app, headers=token)[0] == 200


def test_a_body_over_the_limit_answers_the_same_document_as_any_input_too_large() -> None:
    app = BodyLimit(_ok, max_bytes=10)
    status, headers, body = _call(app, headers=[(b"content-length", b"11")])
    assert status == 413
    assert headers["content-type"] == problems.MEDIA_TYPE
    assert set(body) == PROBLEM_FIELDS | {"errors"}
    assert body["title"] == TooLarge.title
    assert body["errors"] == [
        {
            "path": "body",
            "message": "request body is 11 bytes or more; the limit is 10 (ARMILLARY_MAX_BODY_BYTES)",
        }
    ]


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (TemporaryError("the store does not answer", delay_s=2.5), 503, "3"),
        (TemporaryError("the store does not answer", delay_s=0.01), 503, "1"),
        (RateLimited("slow down", delay_s=30), 429, "30"),
        (NotFound("no such thing"), 404, None),
    ],
)
def test_a_route_error_answers_its_status_and_retry_after_when_retrying_helps(
    error: ArmillaryError, status: int, retry_after: str | None
) -> None:
    app = FastAPI()
    problems.install(app)

    @app.get("/fails")
    async def fails() -> None:
        raise error

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.get("/fails")

    answer = asyncio.run(call())
    assert answer.status_code == status
    assert answer.headers["content-type"] == problems.MEDIA_TYPE
    assert answer.headers.get("retry-after") == retry_after
    assert answer.json() == {
        "type": "about:blank",
        "title": error.title,
        "status": status,
        "detail": str(error),
    }


def test_rate_limited_is_a_temporary_error_carrying_its_delay() -> None:
    error = RateLimited("slow down", delay_s=7.5)
    assert isinstance(error, TemporaryError)
    assert (error.status_code, error.delay_s) == (429, 7.5)
