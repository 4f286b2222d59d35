"""Starting the node daemon from command-line values, shared by the light `armillary node`
route (armillary.entry) and the Typer command of the same name (armillary.main)."""

from __future__ import annotations

from pathlib import Path


def start_node(
    *,
    server: str | None,
    token: str | None,
    name: str | None,
    labels: str | None,
    data_dir: Path,
    address: str,
    stop_workloads_on_exit: bool,
    tenant_uids: str | None = None,
) -> None:
    """Resolve the options (flags, then env, then the local context file) and run."""
    import dataclasses
    import logging
    import os

    from armillary.cli import context
    from armillary.node import daemon, tenancy

    target = context.resolve(url=server, token=token)
    if not target.token:
        raise ValueError("a token is needed: --token or ARMILLARY_TOKEN")
    parsed: dict[str, str] = {}
    for part in filter(None, (labels or "").split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--labels: expected k=v[,k=v], got {part!r}")
        parsed[key.strip()] = value.strip()
    uids = tenancy.parse_range(
        tenant_uids or os.environ.get(tenancy.ENV_VAR) or tenancy.DEFAULT_UIDS
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = daemon.Options(
        server=target.url,
        token=target.token,
        labels=parsed,
        data_dir=data_dir.resolve(),
        address=address,
        stop_workloads_on_exit=stop_workloads_on_exit,
        tenant_uids=uids,
    )
    if name:
        options = dataclasses.replace(options, name=name)
    daemon.run(options)
