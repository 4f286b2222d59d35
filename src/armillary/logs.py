"""How the server and the node daemon write their own log: `text` (the default) or
`json`, one object per line for a log shipper (Loki, Elasticsearch, CloudWatch).

A JSON line holds `time` (RFC 3339, UTC), `level`, `logger`, `message`, then the
context fields that are known: `request_id`, `tenant`, `event_id`, `run_id`, and
`exc_info` (the traceback, as one string). The context comes from the contextvars
below, bound while a request, a delivery or a run is served (`bound`), or from
`extra=fields(...)` at the call. Only those names are written: whatever else a record
carries (an `extra` mapping, uvicorn's colour hints) is never dumped, so a value a
caller did not mean to publish — a secret — cannot reach the log by accident.

Imported by the node daemon's launcher too, so it keeps to the standard library and
orjson.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import sys
from collections.abc import Iterator
from typing import Any, Final, Literal

import orjson

Format = Literal["text", "json"]
FORMATS: Final[tuple[Format, ...]] = ("text", "json")
ENV_VAR: Final = "ARMILLARY_LOG_FORMAT"
TEXT_FORMAT: Final = "%(asctime)s %(name)s %(levelname)s %(message)s"
"""The node daemon's text lines (the server's text lines are uvicorn's)."""

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "armillary_request_id", default=None
)
"""The id of the HTTP request the running code serves (None outside a request)."""
TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "armillary_tenant", default=None
)
EVENT_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "armillary_event_id", default=None
)
RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "armillary_run_id", default=None
)
CONTEXT: Final = {
    "request_id": REQUEST_ID,
    "tenant": TENANT,
    "event_id": EVENT_ID,
    "run_id": RUN_ID,
}
"""The context fields a JSON line may carry, and where each is bound."""
_MAX_FIELD_CHARS = 512


def parse(value: str, *, where: str) -> Format:
    """`value` as a format; `ValueError` naming `where` (the option or variable)."""
    lowered = value.strip().lower()
    for known in FORMATS:
        if lowered == known:
            return known
    raise ValueError(f"{where}: expected one of {', '.join(FORMATS)}, got {value!r}")


def fields(
    *, tenant: str | None = None, event_id: str | None = None, run_id: str | None = None
) -> dict[str, str]:
    """The `extra=` of a log call naming what it is about (those given, not None). The
    request id is never passed so: it is bound for the whole request."""
    given = {"tenant": tenant, "event_id": event_id, "run_id": run_id}
    return {k: v for k, v in given.items() if v is not None}


@contextlib.contextmanager
def bound(
    *,
    tenant: str | None = None,
    event_id: str | None = None,
    run_id: str | None = None,
) -> Iterator[None]:
    """Every line logged inside carries these fields (those given, not None)."""
    tokens = [
        (var, var.set(value))
        for var, value in ((TENANT, tenant), (EVENT_ID, event_id), (RUN_ID, run_id))
        if value is not None
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in CONTEXT.items():
            value = record.__dict__.get(name)
            if value is None:
                value = var.get()
            if value is not None:
                entry[name] = str(value)[:_MAX_FIELD_CHARS]
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        # orjson writes non-ASCII as UTF-8 and never a raw newline: one line per record.
        return orjson.dumps(entry, default=str).decode()


def configure(format: Format, *, level: int | str = logging.INFO) -> None:
    """Send this process's log to stderr in `format` (the node daemon's way)."""
    if format == "text":
        logging.basicConfig(level=level, format=TEXT_FORMAT)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler])


def uvicorn_config(level: str) -> dict[str, Any]:
    """uvicorn's `log_config` for the JSON format: uvicorn's loggers and ours all go
    through one stderr handler at `level` (ARMILLARY_LOG_LEVEL)."""
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            name: {"handlers": [], "level": upper, "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
        },
        "root": {"handlers": ["stderr"], "level": upper},
    }
