"""`armillary doctor`: is this installation healthy, and if not, what to do.

The CLI checks what only its side can see (the server answers at the resolved URL,
the token is taken, the CLI's and the server's versions agree) and shows the checks
the server makes of itself (`GET /api/v1/doctor`: store, migrations, secret key,
nodes, directories, Postgres LISTEN). Every `warn` and `fail` comes with what to do.

Exit 0 when nothing failed, 1 when a check failed (or, with `--strict`, warned).
A server that cannot be reached is a failed check like any other, never a traceback.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from armillary import __version__, wire
from armillary.cli import context, output
from armillary.cli.console import EXIT_ERROR, EXIT_OK, fail, out, resolve
from armillary.client import Client, Unreachable
from armillary.errors import (
    ArmillaryError,
    Forbidden,
    NotFound,
    TemporaryError,
    Unauthorized,
)

TIMEOUT_S = 10.0


def _fetch(target: context.Target) -> tuple[list[wire.DoctorCheck], wire.Doctor | None]:
    """The CLI's own checks, and the server's answer when there is one."""

    async def session() -> wire.Doctor:
        async with Client(target.url, target.token, timeout_s=TIMEOUT_S) as api:
            return await api.doctor()

    url = target.url
    try:
        report = asyncio.run(session())
    except Unreachable:
        failed = (
            f"no answer at {url}",
            "start it (`armillary server`, or `armillary up DIR`), or point --server / "
            "ARMILLARY_URL at the running one",
        )
    except (Unauthorized, Forbidden) as exc:
        failed = (
            f"{url} answers but refuses this token: {exc}",
            "pass a viewer or admin key with --token or ARMILLARY_TOKEN (`armillary token create`)",
        )
    except NotFound:
        failed = (
            f"{url} answers but has no /api/v1/doctor",
            f"the server is older than this CLI ({__version__}): upgrade the server",
        )
    except TemporaryError as exc:
        failed = (
            f"{url} answers, but cannot serve now: {exc}",
            f"see whether its store answers ({url}/readyz) and read the server's log",
        )
    except ArmillaryError as exc:
        failed = (f"{url} answers with an error: {exc}", "look at the server's log")
    else:
        return [_reached(url), _versions(report.version)], report
    finding, fix = failed
    return [wire.DoctorCheck(name="server", status="fail", finding=finding, fix=fix)], None


def _reached(url: str) -> wire.DoctorCheck:
    return wire.DoctorCheck(name="server", status="ok", finding=f"reachable at {url}")


def _versions(server: str) -> wire.DoctorCheck:
    if server == __version__:
        return wire.DoctorCheck(name="version", status="ok", finding=f"server and CLI {server}")
    return wire.DoctorCheck(
        name="version",
        status="warn",
        finding=f"server {server}, CLI {__version__}",
        fix="install the same version of armillary on both sides",
    )


def _show(checks: list[wire.DoctorCheck]) -> None:
    rows = [["CHECK", "STATUS", "FINDING"]]
    rows += [[c.name, c.status.upper(), c.finding] for c in checks]
    out.print(output.align(rows), markup=False)
    fixes = [c for c in checks if c.fix and c.status in ("warn", "fail")]
    if fixes:
        out.print("\nWhat to do:", markup=False)
        for check in fixes:
            out.print(f"  {check.name}: {check.fix}", markup=False)
    counts = {s: sum(1 for c in checks if c.status == s) for s in ("ok", "warn", "fail")}
    out.print(
        f"\n{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)",
        markup=False,
    )


def doctor(
    ctx: typer.Context,
    output_format: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
    strict: Annotated[bool, typer.Option(help="Exit 1 on a warning too.")] = False,
) -> None:
    """Check the server, its store, secret key, nodes and directories; say what to fix."""
    if output_format not in ("table", "json"):
        raise typer.BadParameter("table or json", param_hint="--output")
    try:
        target = resolve(ctx)
    except ArmillaryError as exc:
        fail(exc)
    checks, report = _fetch(target)
    if report is not None:
        checks += report.checks
    failing = {"fail", "warn"} if strict else {"fail"}
    healthy = not any(c.status in failing for c in checks)
    if output_format == "json":
        document = {
            "server": target.url,
            "healthy": healthy,
            "checks": [wire.dump(c) for c in checks],
        }
        out.print(output.to_json(document), markup=False)
    else:
        _show(checks)
    raise typer.Exit(EXIT_OK if healthy else EXIT_ERROR)


def register(root: typer.Typer) -> None:
    root.command()(doctor)
