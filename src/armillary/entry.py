"""The `armillary` console script.

`armillary node …` is routed straight to the node daemon with a small argparse
parser, so the daemon — the one process on every machine, next to every workload —
never loads the CLI's libraries (Typer, Rich, httpx, pydantic). Everything else goes
to the full CLI in armillary.main.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["node"] and not {"-h", "--help"} & set(args[1:]):
        run_node_command(args[1:])
        return
    from armillary.main import main as full_cli

    full_cli()


def run_node_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="armillary node")
    parser.add_argument("--server")
    parser.add_argument("--token")
    parser.add_argument("--name")
    parser.add_argument("--labels")
    parser.add_argument("--data-dir", type=Path, default=Path(".armillary/node"))
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--stop-workloads-on-exit", action="store_true")
    options = parser.parse_args(argv)
    try:
        start_node(
            server=options.server,
            token=options.token,
            name=options.name,
            labels=options.labels,
            data_dir=options.data_dir,
            address=options.address,
            stop_workloads_on_exit=options.stop_workloads_on_exit,
        )
    except ValueError as exc:
        parser.error(str(exc))


def start_node(
    *,
    server: str | None,
    token: str | None,
    name: str | None,
    labels: str | None,
    data_dir: Path,
    address: str,
    stop_workloads_on_exit: bool,
) -> None:
    """Resolve the options (flags, then env, then the local context file) and run."""
    import dataclasses
    import logging

    from armillary.cli import context
    from armillary.node import daemon

    target = context.resolve(url=server, token=token)
    if not target.token:
        raise ValueError("a token is needed: --token or ARMILLARY_TOKEN")
    parsed: dict[str, str] = {}
    for part in filter(None, (labels or "").split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--labels: expected k=v[,k=v], got {part!r}")
        parsed[key.strip()] = value.strip()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = daemon.Options(
        server=target.url,
        token=target.token,
        labels=parsed,
        data_dir=data_dir.resolve(),
        address=address,
        stop_workloads_on_exit=stop_workloads_on_exit,
    )
    if name:
        options = dataclasses.replace(options, name=name)
    daemon.run(options)
