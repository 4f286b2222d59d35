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

from armillary import launcher, logs


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
    parser.add_argument("--token", help="the node's key (visible in ps: prefer --token-file)")
    parser.add_argument("--token-file", type=Path, help="a file holding the node's key")
    parser.add_argument("--name")
    parser.add_argument("--labels")
    parser.add_argument("--data-dir", type=Path, default=Path(".armillary/node"))
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--stop-workloads-on-exit", action="store_true")
    parser.add_argument("--tenant-uids")
    parser.add_argument("--port-leases", type=Path)
    parser.add_argument("--dynamic-ports")
    parser.add_argument(
        "--cpu-millicores",
        type=int,
        help="CPU offered to the scheduler "
        "(or ARMILLARY_NODE_CPU_MILLICORES; default: cores x 1000)",
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        help="memory offered to the scheduler (or ARMILLARY_NODE_MEMORY_MB; default: all of it)",
    )
    parser.add_argument(
        "--takeover",
        action="store_true",
        help="replace a daemon that is connected under this node name (audited)",
    )
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="log lines as text or one JSON object a line (or ARMILLARY_LOG_FORMAT)",
    )
    options = parser.parse_args(argv)
    try:
        launcher.start_node(
            server=options.server,
            token=options.token,
            token_file=options.token_file,
            name=options.name,
            labels=options.labels,
            data_dir=options.data_dir,
            address=options.address,
            stop_workloads_on_exit=options.stop_workloads_on_exit,
            tenant_uids=options.tenant_uids,
            takeover=options.takeover,
            port_leases=options.port_leases,
            dynamic_ports=options.dynamic_ports,
            cpu_millicores=options.cpu_millicores,
            memory_mb=options.memory_mb,
            log_format=options.log_format,
        )
    except ValueError as exc:
        parser.error(str(exc))
