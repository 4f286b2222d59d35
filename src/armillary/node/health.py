"""Health checks: probe a replica over HTTP, TCP or a command, and count the results.

The supervisor starts one `watch()` task per replica that has a health check when its
process starts (or is adopted), and cancels it when the process exits or is stopped.
`step()` is the pure counting rule; the probes do the I/O.

Invariants: a probe never outlives the check's `timeout_s`; failures inside
`start_period_s` after the process started do not count; `healthy` turns True after
`success_threshold` successes in a row and False after `failure_threshold` counted
failures in a row, and otherwise keeps its value. While no result is known yet the
replica is probed every min(interval_s, STARTING_INTERVAL_MAX_S), so a service with a
long interval is not reported "starting" for a whole interval after it is ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from armillary import errors
from armillary.node import process
from armillary.node.tenancy import RunAs
from armillary.protocol import HealthCheck

log = logging.getLogger(__name__)

STARTING_INTERVAL_MAX_S = 1.0
_USER_AGENT = "armillary-health/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """What the probes have established so far."""

    healthy: bool | None = None  # None: not known yet
    successes: int = 0  # in a row
    failures: int = 0  # in a row, counting only those past the start period


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where and how to probe one replica."""

    address: str
    ports: Mapping[str, int]  # port name → port
    env: Mapping[str, str]
    cwd: Path
    run_as: RunAs | None = None  # who an exec probe runs as: the replica's user


def step(status: Status, *, ok: bool, counts: bool, check: HealthCheck) -> Status:
    """The status after one probe. `counts` is False inside the start period."""
    if ok:
        successes = status.successes + 1
        healthy = status.healthy
        if successes >= check.success_threshold:
            healthy = True
        return Status(healthy=healthy, successes=successes, failures=0)
    if not counts:
        return Status(healthy=status.healthy, successes=0, failures=status.failures)
    failures = status.failures + 1
    healthy = False if failures >= check.failure_threshold else status.healthy
    return Status(healthy=healthy, successes=0, failures=failures)


def resolve_port(port: str | int | None, ports: Mapping[str, int]) -> int:
    """A port number from a probe's `port`: a name from the spec, a number, or the first."""
    if isinstance(port, int):
        return port
    if port is None:
        if not ports:
            raise LookupError("the replica has no port to probe")
        return next(iter(ports.values()))
    if port not in ports:
        raise LookupError(f"unknown port {port!r}; the replica has {sorted(ports)}")
    return ports[port]


async def probe(check: HealthCheck, target: Target) -> str | None:
    """Run one probe: None if it passed, else what went wrong (naming what was probed)."""
    host = f"[{target.address}]" if ":" in target.address else target.address
    where = "exec" if check.exec is None else check.exec.command[0]
    try:
        if check.http is not None:
            port = resolve_port(check.http.port, target.ports)
            where = f"GET http://{host}:{port}{check.http.path}"
        elif check.tcp is not None:
            port = resolve_port(check.tcp.port, target.ports)
            where = f"tcp {host}:{port}"
        async with asyncio.timeout(check.timeout_s):
            if check.http is not None:
                return await _http(
                    target.address, port, check.http.path, expect=check.http.expect_status
                )
            if check.tcp is not None:
                _, writer = await asyncio.open_connection(target.address, port)
                await _close(writer)
                return None
            if check.exec is not None:
                return await _exec(check.exec.command, target)
            return "the health check names no probe"
    except LookupError as exc:
        return str(exc)
    except TimeoutError:
        return f"{where}: timed out after {check.timeout_s:g}s"
    except OSError as exc:
        return f"{where}: {exc.strerror or exc}"


async def _http(address: str, port: int, path: str, *, expect: int | None) -> str | None:
    host = f"[{address}]" if ":" in address else address
    url = f"http://{host}:{port}{path}"
    reader, writer = await asyncio.open_connection(address, port)
    try:
        request = (
            f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
            f"User-Agent: {_USER_AGENT}\r\nAccept: */*\r\n\r\n"
        )
        writer.write(request.encode("utf-8"))
        await writer.drain()
        line = await reader.readline()
    finally:
        await _close(writer)
    parts = line.split(maxsplit=2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        shown = line[:80].decode(errors="replace").strip() or "nothing"
        return f"GET {url}: expected an HTTP status line, got {shown!r}"
    status = int(parts[1])
    ok = status == expect if expect is not None else 200 <= status < 400
    if ok:
        return None
    wanted = str(expect) if expect is not None else "200-399"
    return f"GET {url} returned {status} (expected {wanted})"


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError as exc:  # the peer reset a connection we were closing anyway
        log.debug("closing a probe connection: %s", exc)


async def _exec(command: list[str], target: Target) -> str | None:
    try:
        code, output = await process.run(
            command, env=target.env, cwd=target.cwd, run_as=target.run_as
        )
    except errors.SpawnError as exc:
        return exc.message
    if code == 0:
        return None
    last = output.splitlines()[-1] if output else ""
    what = f"{command[0]} {_describe(code)}"
    return f"{what}: {last}" if last else what


def _describe(code: int | None) -> str:
    if code is None:
        return "exited (code unknown)"
    return f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}"


async def watch(
    check: HealthCheck,
    target: Target,
    *,
    started_mono: float,
    initial: Status,
    on_result: Callable[[Status, str | None], None],
) -> None:
    """Probe forever (until cancelled), passing each new status to `on_result`.

    `started_mono` is the loop time the process started, for the start period.
    """
    loop = asyncio.get_running_loop()
    status = initial
    while True:
        interval_s = check.interval_s
        if status.healthy is None:
            interval_s = min(interval_s, STARTING_INTERVAL_MAX_S)
        await asyncio.sleep(interval_s)
        try:
            error = await probe(check, target)
        except Exception as exc:  # the task boundary: a bug in a probe is a failed probe
            log.exception("health probe crashed")
            error = f"probe error: {exc!r}"
        counts = loop.time() - started_mono >= check.start_period_s
        status = step(status, ok=error is None, counts=counts, check=check)
        on_result(status, error)
