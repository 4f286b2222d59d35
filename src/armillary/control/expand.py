"""Expansion: a Tenant on a Stack → the replicas that should run, one template per
component. Pure: the same tenant and stack always give the same templates and hashes.

Env is layered: the stack component's env, then the tenant's env, then the tenant's
override for that component; a string command runs under `sh -c`.
Components that name a `release` or an `image` cannot run on the nodes runtime yet:
they come back with a `problem` instead of a command.
"""

from __future__ import annotations

from armillary.resources import quantity
from armillary.resources.stack import Component, Stack
from armillary.resources.tenant import Tenant
from armillary.runtime.instance import Instance, Template


def expand(tenant: Tenant, stack: Stack) -> Instance:
    """One template per component of `stack`, as `tenant` runs it, in stack order."""
    templates = tuple(_template(tenant, c) for c in stack.spec.components)
    return Instance(tenant=tenant.metadata.name, templates=templates)


def _template(tenant: Tenant, component: Component) -> Template:
    override = tenant.spec.overrides.get(component.name)
    env = {**component.env, **tenant.spec.env, **(override.env if override else {})}
    replicas = component.replicas
    if override is not None and override.replicas is not None:
        replicas = override.replicas
    problem = None
    command: tuple[str, ...] = ()
    if isinstance(component.command, str):
        command = ("sh", "-c", component.command)
    elif component.command is not None:
        command = (*component.command, *component.args)
    else:
        source = f"release {component.release}" if component.release else f"image {component.image}"
        problem = (
            f"{source}: the nodes runtime runs commands; release and image references are "
            "resolved by the release registry, which is not built yet"
        )
    if isinstance(component.command, str) and component.args:
        # A string runs under sh; its args arrive as "$@".
        command = ("sh", "-c", f'{component.command} "$@"', "sh", *component.args)
    restart = component.restart.model_dump(mode="json")
    if restart["policy"] is None:
        restart["policy"] = "always" if component.type == "service" else "on-failure"
    resources = component.resources
    return Template(
        component=component.name,
        type=component.type,
        replicas=replicas if component.type == "service" else 1,
        command=command,
        cwd=component.cwd,
        env=env,
        ports=tuple((p.name, p.port) for p in component.ports),
        health_check=(
            component.health_check.model_dump(mode="json", exclude_none=True)
            if component.health_check
            else None
        ),
        restart=restart,
        stop_grace_s=component.stop_grace_s,
        timeout_s=component.timeout_s,
        depends_on=tuple(component.depends_on),
        cpu_millicores=quantity.cpu_millicores(resources.cpu) if resources.cpu is not None else 0,
        memory_mb=quantity.memory_mb(resources.memory) if resources.memory is not None else 0,
        problem=problem,
    )
