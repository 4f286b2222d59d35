"""The pure parts of the audit log: request ids, outcomes, redaction, the rows built
for a request from its principal and notes, and the CLI's time arguments."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from armillary import wire
from armillary.api import audit
from armillary.auth.access import Principal
from armillary.cli import audit as cli_audit
from armillary.control.apply import Applied
from armillary.store import repository

AT = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
ANA = Principal(kind="user", id="ana", role="developer")


@pytest.mark.parametrize(
    ("given_id", "kept"),
    [
        ("abc-123", True),
        ("0af7651916cd43dd8448eb211c80319c", True),
        ("trace:01.span_2", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("has space", False),
        ("new\nline", False),
        ("quote'", False),
        ("<script>", False),
        ("é", False),
        (None, False),
    ],
)
def test_request_ids_are_echoed_only_when_safe(given_id: str | None, kept: bool) -> None:
    assert audit.accepted_request_id(given_id) == (given_id if kept else None)


@given(st.text(max_size=200))
def test_an_accepted_request_id_is_always_short_and_plain(value: str) -> None:
    accepted = audit.accepted_request_id(value)
    if accepted is not None:
        assert 1 <= len(accepted) <= 128
        assert accepted.isascii() and accepted.isprintable() and " " not in accepted


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "ok"),
        (201, "ok"),
        (308, "ok"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not-found"),
        (408, "timed-out"),
        (409, "conflict"),
        (413, "too-large"),
        (422, "invalid"),
        (418, "refused"),
        (500, "error"),
        (503, "error"),
    ],
)
def test_outcome_of_a_status(status: int, outcome: str) -> None:
    assert audit.outcome_of(status) == outcome


def test_redact_hides_every_secret_looking_member_at_any_depth() -> None:
    value = {
        "role": "viewer",
        "Password": "hunter2",
        "nested": {"api_token": "arm_x", "list": [{"client_secret": "s"}, "plain"]},
        "csrfToken": "c",
        "note": "a\x00b",
    }
    assert audit.redact(value) == {
        "role": "viewer",
        "Password": audit.REDACTED,
        "nested": {
            "api_token": audit.REDACTED,
            "list": [{"client_secret": audit.REDACTED}, "plain"],
        },
        "csrfToken": audit.REDACTED,
        "note": "a\ufffdb",
    }


def _entries(**overrides: Any) -> list[Any]:
    args: dict[str, Any] = {
        "at": AT,
        "method": "POST",
        "path": "/api/v1/apply",
        "status": 200,
        "principal": ANA,
        "notes": None,
        "source": "10.0.0.7",
        "request_id": "r-1",
        "duration_ms": 12,
    }
    return audit.entries(**{**args, **overrides})


def test_a_request_without_notes_is_one_row_naming_its_caller() -> None:
    [row] = _entries()
    assert (row.principal, row.principal_kind, row.role, row.tenant) == (
        "user:ana",
        "user",
        "developer",
        None,
    )
    assert (row.verb, row.path, row.status, row.outcome) == ("POST", "/api/v1/apply", 200, "ok")
    assert (row.source, row.request_id, row.duration_ms, row.at) == ("10.0.0.7", "r-1", 12, AT)
    assert row.kind is None and row.name is None and row.detail == {}


def test_an_unknown_caller_is_recorded_without_a_principal() -> None:
    [row] = _entries(principal=None, status=401)
    assert row.principal is None and row.role is None and row.outcome == "unauthorized"


def test_a_tenant_token_is_recorded_with_its_tenant() -> None:
    who = Principal(kind="tenant", id="t1", role="tenant", tenant="acme")
    [row] = _entries(principal=who)
    assert (row.principal, row.tenant) == ("tenant:acme", "acme")


def test_one_row_per_note_and_the_result_only_on_success() -> None:
    notes = [
        {"kind": "Org", "name": "a", "generation_after": 1, "result": "created"},
        {"kind": "Stack", "name": "s", "generation_before": 1, "generation_after": 2},
    ]
    rows = _entries(notes=notes)
    assert [(r.kind, r.name, r.generation_before, r.generation_after, r.outcome) for r in rows] == [
        ("Org", "a", None, 1, "created"),
        ("Stack", "s", 1, 2, "ok"),
    ]
    [refused] = _entries(notes={"kind": "Org", "name": "a", "result": "created"}, status=409)
    assert (refused.kind, refused.outcome) == ("Org", "conflict")


def test_notes_of_the_wrong_shape_cannot_break_a_row() -> None:
    [row] = _entries(notes=[{"kind": 7, "name": "n" * 400, "generation_before": "1"}, "junk"])
    assert row.kind == "7" and len(row.name or "") == 253 and row.generation_before is None
    [row] = _entries(notes=[{"generation_after": True}])
    assert row.generation_after is None


def test_text_is_bounded_and_free_of_nul() -> None:
    [row] = _entries(path="/api/v1/x\x00" + "y" * 2000, method="PATCH\x00")
    assert "\x00" not in (row.path or "") and len(row.path or "") == 1024
    assert row.verb == "PATCH\ufffd"


def test_extra_is_redacted() -> None:
    [row] = _entries(notes=[{"kind": "User", "name": "ana", "extra": {"password": "p"}}])
    assert row.detail == {"password": audit.REDACTED}


def _request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": [], "state": {}})


def _applied(result: Any, *, before: int | None, after: int, kind: str = "Org") -> Applied:
    stored = repository.Stored(
        kind=kind,
        name=f"{kind.lower()}-1",
        uid="u",
        generation=after,
        resource_version=1,
        labels={},
        annotations={},
        spec={},
        status={},
        created_at=AT,
        updated_at=AT,
    )
    return Applied(result=result, stored=stored, generation_before=before)


def test_note_applied_replaces_the_target_and_skips_what_did_not_change() -> None:
    request = _request()
    audit.note(request, kind="Org", name="org-1")
    applied = [
        _applied("created", before=None, after=1),
        _applied("unchanged", before=3, after=3, kind="Stack"),
        _applied("deleted", before=4, after=4, kind="Release"),
    ]
    audit.note_applied(request, applied)
    notes = request.state.audit
    assert [
        (n["kind"], n["generation_before"], n["generation_after"], n["result"]) for n in notes
    ] == [
        ("Org", None, 1, "created"),
        ("Release", 4, None, "deleted"),
    ]


def test_note_applied_when_nothing_changed() -> None:
    one = _request()
    audit.note_applied(one, [_applied("unchanged", before=2, after=2)])
    assert [(n["kind"], n["generation_before"], n["result"]) for n in one.state.audit] == [
        ("Org", 2, "unchanged")
    ]
    many = _request()
    audit.note_applied(many, [_applied("unchanged", before=2, after=2)] * 3)
    assert [(n["kind"], n["result"], n["extra"]) for n in many.state.audit] == [
        (None, "unchanged", {"documents": 3})
    ]


def test_note_accepts_a_plain_dict_set_by_a_route() -> None:
    request = _request()
    request.state.audit = {"kind": "Org", "name": "a"}
    audit.note(request, kind="Org", name="b")
    assert [n["name"] for n in request.state.audit] == ["a", "b"]
    audit.note(request, kind="Org", name="c", replace=True)
    assert [n["name"] for n in request.state.audit] == ["c"]


def test_cli_since_takes_a_duration_back_from_now_or_passes_a_time_through() -> None:
    now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
    assert cli_audit.instant("90m", option="--since", now=now) == "2026-12-02T10:30:00Z"
    assert cli_audit.instant("7d", option="--since", now=now) == "2026-11-25T12:00:00Z"
    assert cli_audit.instant("2026-12-01", option="--since", now=now) == "2026-12-01"
    assert cli_audit.instant(None, option="--since", now=now) is None


def test_cli_table_shows_generations_and_resources() -> None:
    item = {
        "id": 7,
        "at": "2026-12-02T10:00:00Z",
        "principal": "user:ana",
        "verb": "PUT",
        "path": "/api/v1/orgs/a",
        "kind": "Org",
        "name": "a",
        "generationBefore": 1,
        "generationAfter": 2,
        "status": 200,
        "outcome": "configured",
    }
    bare = {**item, "kind": None, "generationBefore": None, "generationAfter": None}
    rows = [wire.AuditEntry.model_validate({**i, "detail": {}}) for i in (item, bare)]
    lines = cli_audit.table(rows).splitlines()
    assert lines[0].split() == [
        "ID", "AT", "PRINCIPAL", "VERB", "PATH", "RESOURCE", "GEN", "STATUS", "OUTCOME"
    ]  # fmt: skip
    assert "org/a" in lines[1] and "1→2" in lines[1] and "configured" in lines[1]
    assert lines[2].split()[5:7] == ["-", "-"]


def test_log_lines_made_while_serving_a_request_carry_its_id() -> None:
    import logging

    from armillary.api import audit as audit_middleware

    audit_middleware.log_request_ids()
    audit_middleware.log_request_ids()  # a second app in the process: installed once
    logger = logging.getLogger("armillary.test")
    token = audit_middleware.CURRENT_REQUEST.set("req-42")
    try:
        inside = logger.makeRecord("armillary.test", logging.INFO, __file__, 1, "x=%s", (1,), None)
    finally:
        audit_middleware.CURRENT_REQUEST.reset(token)
    outside = logger.makeRecord("armillary.test", logging.INFO, __file__, 1, "y", (), None)
    assert (
        inside.getMessage() == "[request req-42] x=1" and inside.__dict__["request_id"] == "req-42"
    )
    assert outside.getMessage() == "y" and outside.__dict__["request_id"] is None
