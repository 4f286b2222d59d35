"""`armillary apply -f` and `armillary plan -f`: send documents from files, directories
or stdin to the server. Files are validated here first, so every problem is reported
as file:line before anything is sent. `apply --dry-run` is `plan`; `apply --wait`
then waits until the tenants the set touched are Ready or failed (`standing`)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import standing
from armillary.cli.console import EXIT_CHANGES, call, fail, out
from armillary.client import Client
from armillary.errors import Invalid, Issue
from armillary.resources import loader

Files = Annotated[
    list[str],
    typer.Option("--filename", "-f", help="A file, a directory, or - for stdin (repeatable)."),
]
Recursive = Annotated[bool, typer.Option("--recursive", "-R", help="Descend into sub-directories.")]
Prune = Annotated[
    bool,
    typer.Option(
        help="Also delete stored resources of the kinds in the set that the set no longer names."
    ),
]


def _load(files: list[str], recursive: bool) -> list[loader.Loaded]:
    stdin = sys.stdin.read() if "-" in files else None
    try:
        return loader.load_paths(files, recursive=recursive, stdin=stdin)
    except Invalid as exc:
        fail(exc)


def _locator(loaded: list[loader.Loaded]) -> Any:
    """Map the server's `document[i]` back to the file and line it came from."""

    def where(issue: Issue) -> Issue:
        if issue.document is not None and 0 <= issue.document < len(loaded):
            doc = loaded[issue.document]
            return replace(issue, file=doc.file, line=doc.line, document=None)
        return issue

    return where


def apply(
    ctx: typer.Context,
    filename: Files,
    recursive: Recursive = False,
    prune: Prune = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Change nothing; show what would change (= plan).")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Then wait until the tenants it touched are Ready (or one fails)."
        ),
    ] = False,
    timeout: Annotated[
        str, typer.Option(help="How long --wait waits: 90s, 5m, 1h (exit 8 after it).")
    ] = "5m",
) -> None:
    """Create or update resources so the server holds what the files say."""
    if dry_run:
        plan(ctx, filename, recursive=recursive, prune=prune)
        return
    try:
        timeout_s = standing.duration_s(timeout)
    except Invalid as exc:
        fail(exc)
    loaded = _load(filename, recursive)

    async def work(api: Client) -> list[wire.AppliedItem]:
        return await api.apply([d.raw for d in loaded], prune=prune)

    results = call(ctx, work, where=_locator(loaded))
    for result in results:
        out.print(f"{result.kind.lower()}/{result.name} {result.result}")
    if wait:
        _wait(ctx, results, timeout_s=timeout_s)


def _wait(ctx: typer.Context, results: list[wire.AppliedItem], *, timeout_s: float) -> None:
    """Wait for the Tenants in the set, and those on a Stack the set changed; progress
    on stderr; exit 1 when one failed, 8 when the timeout passed first."""

    async def work(api: Client) -> list[standing.Standing]:
        tenants = await _touched(api, results)
        return await standing.wait(api, tenants, timeout_s=timeout_s, report=standing.to_stderr)

    standing.finish(call(ctx, work), timeout_s=timeout_s)


async def _touched(api: Client, results: list[wire.AppliedItem]) -> dict[str, int | None]:
    """Tenant → the Stack generation its status must have seen (None: any)."""
    tenants: dict[str, int | None] = {
        r.name: None for r in results if r.kind == "Tenant" and r.result != "deleted"
    }
    stacks = {
        r.name: r.generation
        for r in results
        if r.kind == "Stack" and r.result in ("created", "configured")
    }
    if stacks:
        for tenant in await api.list_kind("Tenant"):
            stack = tenant.spec.get("stack")
            if stack in stacks:
                tenants[tenant.metadata.name] = stacks[stack]
    return tenants


def plan(
    ctx: typer.Context,
    filename: Files,
    recursive: Recursive = False,
    prune: Prune = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 3 when there are changes.")
    ] = False,
) -> None:
    """Show what `apply` would change (+ create, ~ update, - delete), changing nothing."""
    loaded = _load(filename, recursive)

    async def work(api: Client) -> list[wire.Change]:
        return await api.plan([d.raw for d in loaded], prune=prune)

    changes = call(ctx, work, where=_locator(loaded))
    counts = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
    for change in changes:
        counts[change.action] += 1
        ref = f"{change.kind.lower()}/{change.name}"
        if change.action == "create":
            out.print(f"[green]+ create[/green] {ref}")
        elif change.action == "delete":
            out.print(f"[red]- delete[/red] {ref}")
        elif change.action == "update":
            out.print(f"[yellow]~ update[/yellow] {ref}")
            for field in change.fields:
                out.print(f"    {_field(field)}", markup=False)
    changed = counts["create"] + counts["update"] + counts["delete"]
    if not changed:
        out.print(f"No changes. {counts['unchanged']} resource(s) up to date.")
    else:
        out.print(
            f"Plan: {counts['create']} to create, {counts['update']} to update, "
            f"{counts['delete']} to delete, {counts['unchanged']} unchanged."
        )
    if changed and detailed_exitcode:
        raise typer.Exit(EXIT_CHANGES)


def _field(field: wire.FieldChange) -> str:
    def show(value: Any) -> str:
        return json.dumps(value, separators=(", ", ": "))

    sent = field.model_fields_set  # an added field has no `before`, a removed one no `after`
    if "before" not in sent:
        return f"+ {field.path}: {show(field.after)}"
    if "after" not in sent:
        return f"- {field.path}: {show(field.before)}"
    return f"~ {field.path}: {show(field.before)} → {show(field.after)}"


def register(app: typer.Typer) -> None:
    app.command()(apply)
    app.command()(plan)
