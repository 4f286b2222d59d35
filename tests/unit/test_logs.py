"""The JSON log formatter: one object a line with the fixed keys, the context fields
that are bound or passed, tracebacks as one string, non-ASCII kept, and nothing else a
record carries."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

import pytest

from armillary import logs

FIXED = {"time", "level", "logger", "message"}


def record(
    msg: str,
    *args: object,
    level: int = logging.INFO,
    exc: bool = False,
    extra: dict[str, Any] | None = None,
) -> logging.LogRecord:
    logger = logging.getLogger("armillary.test")
    info = sys.exc_info() if exc else None
    return logger.makeRecord(logger.name, level, __file__, 1, msg, args, info, extra=extra)


def formatted(r: logging.LogRecord) -> dict[str, Any]:
    line = logs.JsonFormatter().format(r)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_plain_record_has_the_fixed_keys_only() -> None:
    entry = formatted(record("hello %s", "world", level=logging.WARNING))
    assert set(entry) == FIXED
    assert entry["message"] == "hello world"
    assert entry["level"] == "warning" and entry["logger"] == "armillary.test"
    at = dt.datetime.fromisoformat(entry["time"])
    assert entry["time"].endswith("Z") and at.utcoffset() == dt.timedelta(0)


def test_an_exception_is_one_string_field_on_one_line() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        entry = formatted(record("it failed", level=logging.ERROR, exc=True))
    assert set(entry) == FIXED | {"exc_info"}
    assert entry["exc_info"].startswith("Traceback (most recent call last):")
    assert entry["exc_info"].endswith("ValueError: bad\nthing")


def test_non_ascii_is_kept_as_utf8() -> None:
    line = logs.JsonFormatter().format(record("tenant café ☃ 日本 \x00"))
    assert "café ☃ 日本" in line  # not \\u escapes: readable as it is written
    assert json.loads(line)["message"] == "tenant café ☃ 日本 \x00"


def test_only_the_known_context_fields_of_extra_are_written() -> None:
    leaked = {"password": "hunter2", "token": "arm_x", "detail": {"key": "s3cr3t"}}
    r = record("run done", extra={**leaked, **logs.fields(tenant="acme", run_id="r1")})
    line = logs.JsonFormatter().format(r)
    assert json.loads(line) == {
        **{k: json.loads(line)[k] for k in FIXED},
        "tenant": "acme",
        "run_id": "r1",
    }
    for value in ("hunter2", "arm_x", "s3cr3t", "password"):
        assert value not in line


def test_bound_context_is_on_every_line_and_ends_with_its_block() -> None:
    token = logs.REQUEST_ID.set("req-7")
    try:
        with logs.bound(tenant="acme", event_id="e1", run_id="r1"):
            inside = formatted(record("x"))
            passed = formatted(record("y", extra=logs.fields(run_id="r2")))
        after = formatted(record("z"))
    finally:
        logs.REQUEST_ID.reset(token)
    outside = formatted(record("w"))
    assert {k: inside[k] for k in ("request_id", "tenant", "event_id", "run_id")} == {
        "request_id": "req-7",
        "tenant": "acme",
        "event_id": "e1",
        "run_id": "r1",
    }
    assert passed["run_id"] == "r2"  # what the call names wins over what is bound
    assert set(after) == FIXED | {"request_id"}
    assert set(outside) == FIXED


@pytest.mark.parametrize(
    ("given", "expected"), [("json", "json"), ("JSON", "json"), (" text ", "text")]
)
def test_formats_are_read_in_any_case(given: str, expected: str) -> None:
    assert logs.parse(given, where="--log-format") == expected


def test_an_unknown_format_names_where_it_came_from() -> None:
    with pytest.raises(ValueError, match=r"ARMILLARY_LOG_FORMAT: expected one of text, json"):
        logs.parse("xml", where="ARMILLARY_LOG_FORMAT")
