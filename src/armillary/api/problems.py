"""Errors as `application/problem+json` (RFC 9457).

Every error response carries `type`, `title`, `status`, `detail`, and for bad input
an `errors` list: one entry per place, with the field `path`, the `document` index
when a batch was sent, and the `message` saying what was expected. A
`TemporaryError` (a `RateLimited` one included) adds `Retry-After`, in whole seconds.

The exception handlers answer errors raised inside routes; the ASGI middlewares that
answer before any route (the body limit, the rate limit) send `response(exc)`, so
every error answer of the API is built here, one way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from armillary.errors import (
    ArmillaryError,
    Invalid,
    Issue,
    NotFound,
    TemporaryError,
    Unauthorized,
)
from armillary.resources.validate import format_path

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("armillary.api")


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[Issue] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = document(status, title, detail, errors=errors)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def document(
    status: int, title: str, detail: str, *, errors: list[Issue] | None = None
) -> dict[str, Any]:
    """The problem document (RFC 9457) `problem` answers with."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [_issue(i) for i in errors]
    return body


def of_error(exc: ArmillaryError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, problem document and headers answering `exc`."""
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, TemporaryError):
        headers["Retry-After"] = retry_after(exc.delay_s)
    if isinstance(exc, Invalid):
        detail = f"{len(exc.issues)} problem(s) in the input; nothing was changed"
        return exc.status_code, document(exc.status_code, exc.title, detail, errors=exc.issues), {}
    if exc.status_code >= 500:
        log.error("request failed: %s", exc)
    return exc.status_code, document(exc.status_code, exc.title, str(exc)), headers


def retry_after(delay_s: float) -> str:
    """`delay_s` as a `Retry-After` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(delay_s)))


def response(exc: ArmillaryError) -> JSONResponse:
    """The problem response answering `exc` (an ASGI app: call it with scope, receive,
    send to answer from a middleware)."""
    status, body, headers = of_error(exc)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers or None)


class Refused(HTTPException):
    """`error`, raised where only an HTTPException gets through to the app's handlers:
    from reading a request's body (FastAPI answers any other exception there with a
    400 of its own). Answered as `error` is."""

    def __init__(self, error: ArmillaryError) -> None:
        super().__init__(status_code=error.status_code, detail=str(error))
        self.error = error


def _issue(issue: Issue) -> dict[str, Any]:
    out: dict[str, Any] = {"path": issue.path, "message": issue.message}
    if issue.document is not None:
        out["document"] = issue.document
    if issue.line is not None:  # YAML text sent to plan/apply: the line in that text
        out["line"] = issue.line
    return out


HIDDEN = "not found"
"""What a tenant token is told of anything it cannot have: another tenant's thing and
a thing that does not exist get this one answer, so names cannot be probed."""


async def _armillary_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ArmillaryError)
    who = getattr(request.state, "principal", None)
    if isinstance(exc, NotFound) and getattr(who, "role", None) == "tenant":
        # A missing thing's answer names it ("tenant/acme-x not found"); another
        # tenant's answers `visible`'s plain words. Both become the same bytes.
        return response(NotFound(HIDDEN))
    return response(exc)


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return await _armillary_error(request, exc.error)


async def _request_invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = [Issue(path=format_path(e["loc"]), message=str(e["msg"])) for e in exc.errors()]
    return problem(422, "Invalid input", "the request does not match the API", errors=issues)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
    return problem(exc.status_code, title, str(exc.detail), headers=exc.headers)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "the server failed; see its log")


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""
    app.add_exception_handler(ArmillaryError, _armillary_error)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
