"""`armillary audit`: search the audit log (admin keys only).

Filters go to `GET /api/v1/audit` as they are; `--since`/`--until` take an ISO 8601
time or a duration back from now (`15m`, `12h`, `7d`). Rows come newest first, page
by page, until `--limit` rows are printed or the log has no more.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.access import duration_s
from armillary.cli.console import call
from armillary.client import Client

PAGE_MAX = 1000  # the server's largest page


def instant(value: str | None, *, option: str, now: dt.datetime) -> str | None:
    """`7d` → the ISO 8601 time 7 days before `now`; anything else is sent as it is
    (the server refuses what is not ISO 8601)."""
    if value is None:
        return None
    if value[-1:] in ("s", "m", "h", "d") and value[:-1].isdigit():
        moment = now - dt.timedelta(seconds=duration_s(value, option=option))
        return moment.isoformat().replace("+00:00", "Z")
    return value


def _resource(doc: dict[str, Any]) -> str:
    if not doc.get("kind"):
        return "-"
    return f"{doc['kind'].lower()}/{doc.get('name') or ''}"


def _generation(doc: dict[str, Any]) -> str:
    before, after = doc.get("generationBefore"), doc.get("generationAfter")
    if before is None and after is None:
        return "-"
    return f"{'-' if before is None else before}→{'-' if after is None else after}"


COLUMNS: list[output.Column] = [
    ("ID", lambda d: str(d["id"])),
    ("AT", lambda d: d["at"]),
    ("PRINCIPAL", lambda d: d.get("principal") or "-"),
    ("VERB", lambda d: d["verb"]),
    ("PATH", lambda d: d.get("path") or "-"),
    ("RESOURCE", _resource),
    ("GEN", _generation),
    ("STATUS", lambda d: str(d.get("status") or "-")),
    ("OUTCOME", lambda d: d["outcome"]),
]
WIDE: list[output.Column] = [
    ("ROLE", lambda d: d.get("role") or "-"),
    ("SOURCE", lambda d: d.get("source") or "-"),
    ("REQUEST ID", lambda d: d.get("requestId") or "-"),
    ("DURATION", lambda d: "-" if d.get("durationMs") is None else f"{d['durationMs']}ms"),
]


def listing(items: list[wire.AuditEntry]) -> output.Listing:
    return output.Listing(
        items=[wire.dump(i) for i in items],
        columns=COLUMNS,
        wide=WIDE,
        name=lambda d: f"audit/{d['id']}",
        empty="no audit log entries match",
    )


def table(items: list[wire.AuditEntry]) -> str:
    return output.render(listing(items), output.Format.table)


async def pages(
    api: Client, filters: dict[str, str | int | None], *, limit: int
) -> list[wire.AuditEntry]:
    """Up to `limit` rows, newest first, page by page."""
    items: list[wire.AuditEntry] = []
    before: int | None = None
    while len(items) < limit:
        page = await api.audit(
            {**filters, "limit": min(PAGE_MAX, limit - len(items))}, before_id=before
        )
        items += page.items
        before = page.next
        if before is None:
            break
    return items


def search(
    ctx: typer.Context,
    principal: Annotated[str | None, typer.Option(help="e.g. user:ana, token:3f2a…")] = None,
    kind: Annotated[str | None, typer.Option(help="Resource kind, e.g. Tenant.")] = None,
    name: Annotated[str | None, typer.Option(help="Resource (or user, key) name.")] = None,
    tenant: Annotated[str | None, typer.Option(help="The caller's tenant.")] = None,
    verb: Annotated[str | None, typer.Option(help="POST, PUT, DELETE, or an action.")] = None,
    status: Annotated[int | None, typer.Option(help="HTTP status answered.")] = None,
    outcome: Annotated[str | None, typer.Option(help="created, invalid, forbidden, …")] = None,
    request_id: Annotated[str | None, typer.Option("--request-id", help="X-Request-ID.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 time, or 15m/12h/7d ago.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 time, or 15m/12h/7d ago.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 50,
    out_format: output.Output = output.Format.table,
) -> None:
    """Search the audit log: who changed what, when, from where, and how it ended."""
    now = dt.datetime.now(dt.UTC)
    filters: dict[str, str | int | None] = {
        "principal": principal,
        "kind": kind,
        "name": name,
        "tenant": tenant,
        "verb": verb,
        "status": status,
        "outcome": outcome,
        "request_id": request_id,
        "since": instant(since, option="--since", now=now),
        "until": instant(until, option="--until", now=now),
    }

    async def work(api: Client) -> list[wire.AuditEntry]:
        return await pages(api, filters, limit=limit)

    output.show(listing(call(ctx, work)), out_format)


def register(main: typer.Typer) -> None:
    main.command("audit")(search)
