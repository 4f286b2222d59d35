"""Starting the node daemon from command-line values, shared by the light `armillary node`
route (armillary.entry) and the Typer command of the same name (armillary.main).

The node's key comes, in order, from `--token-file`, `--token`, `ARMILLARY_NODE_TOKEN`,
`ARMILLARY_TOKEN`, then the local context file. A command line is readable by every
user of the machine (`ps`, `/proc/<pid>/cmdline`), so `--token` still works but
prints a warning, like `docker login -p`; the file and the environment do not show.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from armillary.cli.context import NODE_TOKEN_ENV

ARGV_WARNING = (
    "warning: --token puts the key on the command line, where every user of this machine "
    "can read it (ps, /proc/<pid>/cmdline); use --token-file PATH or "
    f"{NODE_TOKEN_ENV} instead"
)
# What the node offers the scheduler when --cpu-millicores / --memory-mb are not given.
CPU_ENV = "ARMILLARY_NODE_CPU_MILLICORES"
MEMORY_ENV = "ARMILLARY_NODE_MEMORY_MB"


def node_token(*, token: str | None, token_file: Path | None, log_json: bool = False) -> str | None:
    """The key the node daemon connects with, from the first source that has one;
    `ValueError` naming the option for a file that cannot be used. `log_json`: the
    warning about `--token` is a log line, so every line of the output is JSON."""
    if token is not None and token_file is not None:
        raise ValueError("--token and --token-file: give one of them, not both")
    if token_file is not None:
        try:
            value = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--token-file: cannot read {token_file}: {exc}") from None
        if not value or any(c.isspace() for c in value):
            raise ValueError(f"--token-file: {token_file} must hold the key alone on one line")
        return value
    if token is not None:
        if log_json:
            logging.getLogger("armillary.node").warning(ARGV_WARNING.removeprefix("warning: "))
        else:
            print(ARGV_WARNING, file=sys.stderr)
        return token
    return os.environ.get(NODE_TOKEN_ENV) or None


def start_node(
    *,
    server: str | None,
    token: str | None,
    token_file: Path | None = None,
    name: str | None,
    labels: str | None,
    data_dir: Path,
    address: str,
    stop_workloads_on_exit: bool,
    tenant_uids: str | None = None,
    takeover: bool = False,
    port_leases: Path | None = None,
    dynamic_ports: str | None = None,
    cpu_millicores: int | None = None,
    memory_mb: int | None = None,
    log_format: str | None = None,
) -> None:
    """Resolve the options (flags, then env, then the local context file) and run."""
    import dataclasses
    import os

    from armillary import logs
    from armillary.cli import context
    from armillary.node import daemon, process, tenancy

    if log_format is not None:
        chosen = logs.parse(log_format, where="--log-format")
    else:
        chosen = logs.parse(os.environ.get(logs.ENV_VAR) or "text", where=logs.ENV_VAR)
    # First, so that every line the daemon writes is in the chosen format.
    logs.configure(chosen)
    given = node_token(token=token, token_file=token_file, log_json=chosen == "json")
    target = context.resolve(url=server, token=given)
    if not target.token:
        raise ValueError(
            f"a token is needed: --token-file PATH, {NODE_TOKEN_ENV} or ARMILLARY_TOKEN"
        )
    parsed: dict[str, str] = {}
    for part in filter(None, (labels or "").split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--labels: expected k=v[,k=v], got {part!r}")
        parsed[key.strip()] = value.strip()
    uids = tenancy.parse_range(
        tenant_uids or os.environ.get(tenancy.ENV_VAR) or tenancy.DEFAULT_UIDS
    )
    options = daemon.Options(
        server=target.url,
        token=target.token,
        labels=parsed,
        data_dir=data_dir.resolve(),
        address=address,
        stop_workloads_on_exit=stop_workloads_on_exit,
        tenant_uids=uids,
        takeover=takeover,
        port_leases=port_leases.resolve() if port_leases else None,
        dynamic_ports=process.parse_ports(dynamic_ports)
        if dynamic_ports
        else process.DYNAMIC_PORTS,
        cpu_millicores=offered(cpu_millicores, flag="--cpu-millicores", env=CPU_ENV),
        memory_mb=offered(memory_mb, flag="--memory-mb", env=MEMORY_ENV),
    )
    if name:
        options = dataclasses.replace(options, name=name)
    daemon.run(options)


def offered(value: int | None, *, flag: str, env: str) -> int | None:
    """A capacity the node declares, from its flag, then its environment variable; None
    leaves it to the machine's. `ValueError` naming where a value that is not a positive
    integer came from."""

    where, raw = flag, value
    if raw is None:
        text = os.environ.get(env)
        if not text:
            return None
        where = env
        try:
            raw = int(text)
        except ValueError:
            raise ValueError(f"{env}: expected a positive integer, got {text!r}") from None
    if raw <= 0:
        raise ValueError(f"{where}: expected a positive integer, got {raw}")
    return raw
