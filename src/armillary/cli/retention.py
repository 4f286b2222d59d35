"""`armillary retention`: what history the server keeps, and for how long.

One row per kept history (events, agent runs, provisioning runs, schedule runs, the
audit log): its policy (maximum age, maximum count), how many rows are kept now and
how old the oldest is, from `GET /api/v1/retention`. The settings that change a
policy are `ARMILLARY_RETENTION_<KIND>_DAYS` and `_MAX` on the server.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.console import call, out
from armillary.client import Client


class Format(StrEnum):
    """`-o` of `retention`: a table, or the server's document."""

    table = "table"
    json = "json"
    yaml = "yaml"


def _age(max_age_s: float | None) -> str:
    if max_age_s is None:
        return "forever"
    days = max_age_s / 86400
    return f"{days:g}d" if days >= 1 else f"{max_age_s:g}s"


def _show(report: wire.Retention, *, now: dt.datetime) -> None:
    rows = [["KIND", "MAX AGE", "MAX COUNT", "KEPT", "OLDEST", "LAST REMOVED"]]
    for k in report.kinds:
        rows.append(
            [
                k.kind,
                _age(k.max_age_s),
                "-" if k.max_count is None else str(k.max_count),
                str(k.kept),
                "-" if k.oldest is None else output.age(k.oldest, now=now),
                "-" if k.last_removed is None else str(k.last_removed),
            ]
        )
    out.print(output.align(rows), markup=False)
    state = "runs here" if report.enabled else "is off on this server"
    out.print(
        f"\nRetention {state}: every {report.interval_s:g}s, {report.batch} rows per "
        "transaction; unfinished runs, and the events of kept runs, stay whatever their age.",
        markup=False,
    )


def retention(
    ctx: typer.Context,
    output_format: Annotated[
        Format, typer.Option("--output", "-o", help="table, json or yaml.")
    ] = Format.table,
) -> None:
    """Show what history the server keeps, for how long, and how much it holds now."""

    async def work(api: Client) -> wire.Retention:
        return await api.retention()

    report = call(ctx, work)
    if output_format is Format.table:
        _show(report, now=dt.datetime.now(dt.UTC))
        return
    document = wire.dump(report)
    text = output.to_json(document) if output_format is Format.json else output.to_yaml(document)
    out.print(text.rstrip("\n"), markup=False)


def register(app: typer.Typer) -> None:
    app.command()(retention)
