"""`armillary audit`: search the audit log (admin keys only).

Filters go to `GET /api/v1/audit` as they are; `--since`/`--until` take an ISO 8601
time or a duration back from now (`15m`, `12h`, `7d`). Rows come newest first, page
by page, until `--limit` rows are printed or the log has no more.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.access import duration_s
from armillary.cli.console import call, fail, out
from armillary.client import Client
from armillary.errors import Invalid

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


def _resource(item: wire.AuditEntry) -> str:
    if not item.kind:
        return "-"
    return f"{item.kind.lower()}/{item.name or ''}"


def _generation(item: wire.AuditEntry) -> str:
    before, after = item.generation_before, item.generation_after
    if before is None and after is None:
        return "-"
    return f"{'-' if before is None else before}→{'-' if after is None else after}"


def table(items: list[wire.AuditEntry]) -> str:
    rows = [["ID", "AT", "PRINCIPAL", "VERB", "PATH", "RESOURCE", "GEN", "STATUS", "OUTCOME"]]
    for item in items:
        rows.append(
            [
                str(item.id),
                item.at,
                item.principal or "-",
                item.verb,
                item.path or "-",
                _resource(item),
                _generation(item),
                str(item.status or "-"),
                item.outcome,
            ]
        )
    return output.align(rows)


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
    out_format: Annotated[str, typer.Option("--output", "-o", help="table|json|yaml")] = "table",
) -> None:
    """Search the audit log: who changed what, when, from where, and how it ended."""
    if out_format not in ("table", "json", "yaml"):
        fail(Invalid(f"--output: expected table, json or yaml, got {out_format!r}"))
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

    show(call(ctx, work), out_format)


def show(items: list[wire.AuditEntry], out_format: str) -> None:
    if out_format == "json":
        out.print(output.to_json([wire.dump(i) for i in items]), markup=False)
    elif out_format == "yaml":
        out.print(output.to_yaml([wire.dump(i) for i in items]), markup=False, end="")
    elif items:
        out.print(table(items), markup=False)
    else:
        out.print("no audit log entries match")


def register(main: typer.Typer) -> None:
    main.command("audit")(search)
