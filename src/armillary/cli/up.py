"""`armillary up [DIR]` and `armillary down`: the whole thing on one machine.

`up` starts a server (SQLite under ./.armillary) and one local node daemon as child
processes, applies DIR, shows progress until every tenant is Ready, prints the
tenants, their replicas and URLs, and stays until Ctrl-C — then stops the node
(which stops every replica) and the server, leaving no process behind. `up -d`
leaves them running in the background; `down` stops them. The node runs in DIR, so
commands in the stack files may use paths relative to them.

`up` registers its server as a context of the user (`userconfig`) and makes it
current, so every command — `down` included — reaches it from any directory. It
fails fast rather than wait out what it already knows: a port something listens on
is refused before anything starts, and a crash-looping or failed replica ends the
wait at once (`convergence`), with a non-zero exit.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from armillary import wire
from armillary.cli import context, convergence, output, userconfig
from armillary.cli.console import err, fail, out
from armillary.client import Client
from armillary.errors import ArmillaryError, Conflict, Invalid, PermanentError
from armillary.resources import loader

STATE_FILE = "up.json"
START_DEADLINE_S = 60.0
READY_DEADLINE_S = 180.0
STOP_DEADLINE_S = 60.0


def _spawn(
    args: list[str], *, log: Path, cwd: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "armillary", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches `up`, which stops them in order
        )


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            fail(PermanentError(f"the server exited ({process.returncode}):\n{tail}"))
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    fail(
        PermanentError(f"the server did not become ready within {START_DEADLINE_S:.0f}s; see {log}")
    )


def up(
    directory: Annotated[Path, typer.Argument(help="Stack files to apply.")] = Path("."),
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Leave it running; stop with `down`.")
    ] = False,
    port: Annotated[int, typer.Option(help="Server port.")] = 7400,
    name: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="Register the server as this context (default: DIR's name), made current.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start a server and a local node, apply DIR, and wait until every tenant is Ready."""
    home = context.home().resolve()
    home.mkdir(parents=True, exist_ok=True)
    if (home / STATE_FILE).exists() and _alive(json.loads((home / STATE_FILE).read_text())):
        fail(
            Invalid(
                f"Armillary is already up here ({home / STATE_FILE}); run `armillary down` first"
            )
        )
    try:
        documents = loader.load_paths([str(directory)])
    except Invalid as exc:
        fail(exc)
    _check_port_free(port)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ARMILLARY_HOME": str(home), "ARMILLARY_PORT": str(port)}
    server = _spawn(
        ["server", "--port", str(port)], log=home / "server.log", cwd=home.parent, env=env
    )
    try:
        _wait_ready(url, server, home / "server.log")
    except KeyboardInterrupt:
        _stop({"server": server.pid}, home)
        raise typer.Exit(130) from None
    token = context.saved(home).get("token") or os.environ.get("ARMILLARY_TOKEN") or ""
    _register(name or directory.resolve().name, url=url, token=token, home=home)
    node = _spawn(  # the token goes by environment: a command line is visible to every user
        [
            "node",
            "--server",
            url,
            "--name",
            "local",
            "--data-dir",
            str(home / "node"),
            "--stop-workloads-on-exit",
        ],
        log=home / "node.log",
        cwd=directory.resolve(),
        env={**env, context.NODE_TOKEN_ENV: token},
    )
    pids = {"server": server.pid, "node": node.pid}
    (home / STATE_FILE).write_text(json.dumps({"url": url, **pids}))
    _converge_and_serve(url, token, documents, children=(server, node), home=home, detach=detach)


def _check_port_free(port: int) -> None:
    """Refuse a port something already listens on, before starting anything: the server
    would fail to bind while `up` talked to whatever answers there (another `up`,
    whose token is not ours, so every request was refused as unauthenticated)."""
    host = os.environ.get("ARMILLARY_HOST") or "127.0.0.1"
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                fail(Invalid(f"--port {port}: cannot listen on {host}:{port}: {exc.strerror}"))
            fail(
                Conflict(
                    f"port {port} on {host} is already in use (another `armillary up`? "
                    "`armillary context list` shows the servers `up` started, and "
                    "`armillary --context NAME down` stops one); "
                    "choose a free port with --port"
                )
            )


def _register(name: str, *, url: str, token: str, home: Path) -> None:
    """Record the server as the context `name` and make it current, so commands run
    from any directory reach it; a contexts file that cannot be written only warns."""
    entry = userconfig.Entry(server=url, token=token or None, home=str(home))
    try:
        where = userconfig.put(name, entry, make_current=True)
    except (ArmillaryError, OSError) as exc:
        err.print(f"[yellow]warning:[/yellow] could not record context {name!r}: {exc}")
        return
    out.print(f"Context {name!r} (current) in {where}")


def _converge_and_serve(
    url: str,
    token: str,
    documents: list[loader.Loaded],
    *,
    children: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]],
    home: Path,
    detach: bool,
) -> None:
    """Apply, wait for Ready, print the summary, then serve until Ctrl-C or a child exits.

    Every moment is covered: a Ctrl-C anywhere — while waiting, while printing the
    summary, or once serving — stops both children before `up` exits.
    """
    server, node = children
    pids = {"server": server.pid, "node": node.pid}
    serving = False
    try:
        tenants, problem = asyncio.run(_apply_and_wait(url, token, [d.raw for d in documents]))
        _summary(url, tenants, home)
        if problem is not None and detach:
            err.print(
                "Left running so you can look (`armillary ps`, `armillary logs "
                "TENANT/COMPONENT`, `armillary describe tenant NAME`); "
                "`armillary down` stops everything."
            )
            fail(problem)
        if problem is not None:
            err.print(f"Stopping everything; the server's and the node's logs are in {home}.")
            _stop(pids, home)
            fail(problem)
        if detach:
            out.print("Running in the background; `armillary down` stops everything.")
            return
        serving = True
        out.print("Ctrl-C stops everything.")
        while server.poll() is None and node.poll() is None:
            time.sleep(0.5)
        err.print("a child process exited; stopping")
    except ArmillaryError as exc:
        _stop(pids, home)
        fail(exc)
    except KeyboardInterrupt:
        _stop(pids, home)
        if not serving:  # interrupted before it was up: the shell's code for SIGINT
            raise typer.Exit(130) from None
        return
    _stop(pids, home)


async def _apply_and_wait(
    url: str, token: str, documents: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], ArmillaryError | None]:
    async with Client(url, token) as api:
        deadline = time.monotonic() + START_DEADLINE_S
        while not [n for n in await api.nodes() if n.connected]:
            if time.monotonic() > deadline:
                raise PermanentError(
                    f"the local node did not connect; see {context.home() / 'node.log'}"
                )
            await asyncio.sleep(0.05)
        for result in await api.apply(documents):
            out.print(f"{result.kind.lower()}/{result.name} {result.result}")
        return await convergence.wait(api, console=err, deadline_s=READY_DEADLINE_S)


def _summary(url: str, tenants: list[dict[str, Any]], home: Path) -> None:
    token = context.saved(home).get("token") or os.environ.get("ARMILLARY_TOKEN")
    replicas = asyncio.run(_replicas(url, token))
    rows = [["TENANT", "READY", "COMPONENT", "REPLICAS", "URLS"]]
    for tenant in tenants:
        name = tenant["metadata"]["name"]
        components = tenant.get("status", {}).get("components", {})
        for component, seen in components.items():
            urls = sorted(
                f"http://127.0.0.1:{port}"
                for r in replicas
                if r.tenant == name and r.component == component and r.type == "service"
                for port in list(r.ports.values())[:1]
            )
            rows.append(
                [
                    name,
                    "yes" if convergence.ready(tenant) else "no",
                    component,
                    f"{seen.get('ready', 0)}/{seen.get('desired', 0)}",
                    " ".join(urls) or "-",
                ]
            )
    out.print(output.align(rows), markup=False)
    out.print(f"\nServer: {url}  (API docs {url}/api/v1/docs; token in {home / 'context.json'})")
    out.print(f"Dashboard: {url}/  (`armillary dashboard` opens it, logged in as the admin)")
    out.print("Logs: armillary logs TENANT/COMPONENT -f    Replicas: armillary ps")


async def _replicas(url: str, token: str | None) -> list[wire.Replica]:
    async with Client(url, token) as api:
        return await api.replicas()


def down(ctx: typer.Context) -> None:
    """Stop what `armillary up -d` started: every replica, the node and the server."""
    home = _home_to_stop(ctx)
    path = home / STATE_FILE
    if not path.exists():
        out.print("Nothing is up here.")
        return
    _stop(json.loads(path.read_text()), home)


def _home_to_stop(ctx: typer.Context) -> Path:
    """This directory's `up` (ARMILLARY_HOME, ./.armillary), else the one that started
    the selected context's server (`--context`, ARMILLARY_CONTEXT, the current one)."""
    local = context.home().resolve()
    if "ARMILLARY_HOME" in os.environ or (local / STATE_FILE).exists():
        return local
    options = ctx.obj or {}
    try:
        config = userconfig.load()
        name = options.get("context") or os.environ.get(context.CONTEXT_ENV) or config.current
        entry = config.entry(name) if name else None
    except ArmillaryError as exc:
        fail(exc)
    return Path(entry.home) if entry is not None and entry.home else local


def _stop(pids: dict[str, Any], home: Path) -> None:
    # The node first: on SIGTERM it stops every replica (gracefully), then exits.
    for role in ("node", "server"):
        pid = pids.get(role)
        if not isinstance(pid, int):
            continue
        if _signal(pid, signal.SIGTERM) and not _gone(pid, STOP_DEADLINE_S):
            _signal(pid, signal.SIGKILL)
            _gone(pid, 5)
    (home / STATE_FILE).unlink(missing_ok=True)
    out.print("Stopped.")


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _gone(pid: int, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished == pid:
                return True
        except ChildProcessError:  # not our child (down after up -d): poll for existence
            if not _alive({"pid": pid}):
                return True
        time.sleep(0.02)
    return False


def _alive(pids: dict[str, Any]) -> bool:
    for pid in pids.values():
        if isinstance(pid, int):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                return True
            return True
    return False


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
