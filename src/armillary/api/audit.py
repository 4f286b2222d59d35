"""The audit log's HTTP side: request ids, one audit row per mutating call, retention.

`RequestId` (the outermost middleware) gives every HTTP request an id — the
caller's `X-Request-ID` when it is sane (1–128 of `A-Z a-z 0-9 . _ : -`), else a
new one — keeps it in the request state and puts it on every response, errors and
500s included.

`AuditLog` records every request under /api/v1 that is not GET/HEAD/OPTIONS,
refused ones included: after the handler ran and *before* the response starts, so
an acknowledged mutation always has its row. If the row cannot be written, the
caller gets a 500 instead of the handler's answer. Who is taken from
`request.state.principal` (api/security.py), when known; routes add what they
changed with `note` (or a dict or list of dicts in `request.state.audit`), one row
per note — an apply writes one row per changed document. Request bodies are never
read, and `detail` values under secret-looking keys are redacted: passwords, tokens
and keys never reach the log.

Webhook ingress and other callers without an API request record with
`store.audit.record(conn, entry)` in their own transaction (see store/audit.py).

Rows older than the retention are removed by the retention loop with every other
kept history (control/retention.py).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armillary import logs
from armillary.api import problems
from armillary.auth.access import Principal
from armillary.control.apply import Applied
from armillary.store import audit
from armillary.store.database import Database

log = logging.getLogger("armillary.audit")

HEADER = b"x-request-id"
CURRENT_REQUEST: contextvars.ContextVar[str | None] = logs.REQUEST_ID
"""The id of the request the running code serves (None outside a request)."""


def log_request_ids() -> None:
    """Make every log record made while serving a request carry its id: as the
    `request_id` attribute, and in front of the message, so a text log line can be
    matched with the response (`X-Request-ID`) and the audit row. (The JSON format
    reads the id from `CURRENT_REQUEST` itself, into a field of its own.)"""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "armillary_request_ids", False):
        return  # installed already (several apps in one process)

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        request_id = CURRENT_REQUEST.get()
        record.request_id = request_id
        if request_id is not None:
            record.msg = f"[request {request_id}] {record.msg}"
        return record

    factory.armillary_request_ids = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


AUDITED_PREFIX = "/api/v1/"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REDACTED = "[redacted]"
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SECRET_WORDS = (
    "password",
    "passphrase",
    "secret",
    "token",
    "credential",
    "authorization",
    "cookie",
    "csrf",
    "private",
)
_OUTCOMES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    408: "timed-out",
    409: "conflict",
    413: "too-large",
    422: "invalid",
    429: "rate-limited",
}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def accepted_request_id(value: str | None) -> str | None:
    """The caller's request id if it is safe to echo and store, else None."""
    if value is None or not _SAFE_ID.fullmatch(value):
        return None
    return value


def outcome_of(status: int) -> str:
    """The short result a status stands for, when the route said nothing better."""
    if status < 400:
        return "ok"
    if status >= 500:
        return "error"
    return _OUTCOMES.get(status, "refused")


def redact(value: Any) -> Any:
    """`value` with every member under a secret-looking key replaced by `[redacted]`."""
    if isinstance(value, Mapping):
        return {
            _printable(str(k)): REDACTED if _secret_key(str(k)) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _printable(value)
    return value


def _secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def note(
    request: Request,
    *,
    kind: str | None,
    name: str | None,
    generation_before: int | None = None,
    generation_after: int | None = None,
    result: str | None = None,
    extra: Mapping[str, Any] | None = None,
    replace: bool = False,
) -> None:
    """Say what this request changed: one audit row per note. `result` (created,
    configured, deleted, …) stands for the outcome when the request succeeds. A
    route names its target before the work, so a refusal is recorded with it, and
    notes the change with `replace=True` once it is done. Never pass a secret value
    in `extra`."""
    notes: Any = getattr(request.state, "audit", None)
    if notes is None or replace:
        notes = []
    elif isinstance(notes, Mapping):
        notes = [notes]
    notes.append(
        {
            "kind": kind,
            "name": name,
            "generation_before": generation_before,
            "generation_after": generation_after,
            "result": result,
            "extra": dict(extra or {}),
        }
    )
    request.state.audit = notes


def note_applied(request: Request, applied: Sequence[Applied]) -> None:
    """One note per resource an apply changed, replacing the notes made before. When
    nothing changed, one note saying so (naming the resource when there was one)."""
    request.state.audit = []
    changed = [a for a in applied if a.result != "unchanged"]
    if not changed and len(applied) != 1:
        note(request, kind=None, name=None, result="unchanged", extra={"documents": len(applied)})
        return
    for a in changed or applied:
        note(
            request,
            kind=a.stored.kind,
            name=a.stored.name,
            generation_before=a.generation_before,
            generation_after=None if a.result == "deleted" else a.stored.generation,
            result=a.result,
        )


def entries(
    *,
    at: dt.datetime,
    method: str,
    path: str,
    status: int,
    principal: Any,
    notes: Any,
    source: str | None,
    request_id: str | None,
    duration_ms: int | None,
) -> list[audit.Entry]:
    """The rows for one request: one per note, or one for the request itself."""
    who = principal if isinstance(principal, Principal) else None
    listed = [notes] if isinstance(notes, Mapping) else list(notes or [])
    items = [n for n in listed if isinstance(n, Mapping)] or [{}]
    return [
        audit.Entry(
            at=at,
            verb=_text(method, 32) or "",
            path=_text(path, 1024),
            status=status,
            outcome=_outcome(status, item.get("result")),
            principal=_text(who.name, 300) if who else None,
            principal_kind=who.kind if who else None,
            role=who.role if who else None,
            tenant=who.tenant if who else None,
            kind=_text(item.get("kind"), 64),
            name=_text(item.get("name"), 253),
            generation_before=_number(item.get("generation_before")),
            generation_after=_number(item.get("generation_after")),
            source=_text(source, 64),
            request_id=request_id,
            duration_ms=duration_ms,
            detail=redact(item.get("extra") or {}),
        )
        for item in items
    ]


def _outcome(status: int, result: Any) -> str:
    if status < 400 and isinstance(result, str) and result:
        return result[:64]
    return outcome_of(status)


def _text(value: Any, limit: int) -> str | None:
    return None if value is None else _printable(str(value)[:limit])


def _printable(value: str) -> str:
    # Postgres text and JSONB cannot hold NUL; a path like /api/v1/x%00 has one.
    return value.replace("\x00", "\ufffd")


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class RequestId:
    """ASGI middleware: an `X-Request-ID` on every response (see the module doc)."""

    def __init__(self, app: ASGIApp, *, new: Callable[[], str] = lambda: uuid.uuid4().hex):
        self.app = app
        self._new = new

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for n, v in scope.get("headers", []) if n == HEADER), None)
        given = accepted_request_id(incoming.decode("latin-1") if incoming else None)
        request_id = given or self._new()
        scope.setdefault("state", {})["request_id"] = request_id
        bound = CURRENT_REQUEST.set(request_id)
        started = False

        async def with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() != HEADER]
                message = {**message, "headers": [*kept, (HEADER, request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        except Exception:
            # Answer the 500 here so it carries the id; Starlette's error middleware
            # still logs the exception and sees that a response has started.
            if not started:
                failed = problems.problem(500, "Internal error", "the server failed; see its log")
                await failed(scope, receive, with_id)
            raise
        finally:
            CURRENT_REQUEST.reset(bound)


class AuditLog:
    """ASGI middleware: the audit rows of mutating API calls (see the module doc)."""

    def __init__(self, app: ASGIApp, *, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.app = app
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] in READ_METHODS
            or not path.startswith(AUDITED_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        started_s = time.monotonic()
        recorded = False

        async def after_audit(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                # Raises when the row cannot be written: the answer is then a 500.
                await self._record(scope, message["status"], started_s)
            await send(message)

        try:
            await self.app(scope, receive, after_audit)
        except Exception:
            if not recorded:
                recorded = True
                try:
                    await self._record(scope, 500, started_s)
                except Exception:
                    log.exception("could not record the audit row of a failed request")
            raise

    async def _record(self, scope: Scope, status: int, started_s: float) -> None:
        state = scope["state"]
        rows = entries(
            at=self._clock(),
            method=scope["method"],
            path=scope.get("path", ""),
            status=status,
            principal=state.get("principal"),
            notes=state.get("audit"),
            source=(scope.get("client") or (None, 0))[0],
            request_id=state.get("request_id"),
            duration_ms=int((time.monotonic() - started_s) * 1000),
        )
        db: Database = scope["app"].state.db
        try:
            async with db.write() as conn:
                for row in rows:
                    await audit.record(conn, row)
        except Exception:
            log.exception("audit row not written for %s %s", scope["method"], scope.get("path"))
            raise
