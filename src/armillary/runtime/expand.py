"""Expansion: a Tenant on a Stack → the replicas that should run, one template per
component. Pure: the same tenant and stack always give the same templates and hashes.

Env is layered: the stack component's env, then the tenant's env, then the tenant's
override for that component; a string command runs under `sh -c`.

A component that runs a release (`release: agent@1.2.0` in the stack, or a tenant's
pin in its override, which wins) takes the command of the Release record's process
artifact and runs from an immutable checkout of its tag; `ARMILLARY_RELEASE` tells
the process which one. A release that is not recorded, an image artifact or an inline
`image` (both need a container runtime) come back with a `problem` instead; the image
is kept on the template (`image`) for a container runtime, which reads it and not the
nodes runtime's problem.

The Secrets a tenant names (`Tenant.spec.secrets`) become references on the
templates of the components they apply to, never values: the server resolves them
when it sends an allocation to its node. `secrets` maps the names of the Secrets this
tenant may use to their versions; a Secret that is not there is a `problem`.
"""

from __future__ import annotations

from collections.abc import Mapping

from armillary.resources import quantity
from armillary.resources.release import Release, release_name
from armillary.resources.stack import Component, Stack
from armillary.resources.tenant import Tenant
from armillary.runtime.instance import Instance, Policy, SecretEnv, Template


def expand(
    tenant: Tenant,
    stack: Stack,
    releases: Mapping[str, Release] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Instance:
    """One template per component of `stack`, as `tenant` runs it, in stack order.
    `releases` holds the Release records by name (at least those pinned); `secrets`
    the version of each Secret the tenant may use, by name."""
    templates = tuple(
        _template(tenant, c, releases or {}, secrets or {}) for c in stack.spec.components
    )
    return Instance(tenant=tenant.metadata.name, templates=templates)


def pinned_release(tenant: Tenant, component: Component) -> str | None:
    """The `component@version` this tenant runs for `component`, if it runs a release."""
    override = tenant.spec.overrides.get(component.name)
    if override is not None and override.release is not None:
        return override.release
    return component.release


def _template(
    tenant: Tenant,
    component: Component,
    releases: Mapping[str, Release],
    secrets: Mapping[str, str],
) -> Template:
    override = tenant.spec.overrides.get(component.name)
    env = {**component.env, **tenant.spec.env, **(override.env if override else {})}
    replicas = component.replicas
    if override is not None and override.replicas is not None:
        replicas = override.replicas
    reference = pinned_release(tenant, component)
    problem = None
    cwd = component.cwd
    checkout: tuple[str, str] | None = None
    command: tuple[str, ...] = ()
    image = component.image
    if reference is not None:
        command, cwd, checkout, problem = _from_release(reference, component, releases)
        image = _image_of(reference, releases)
        if problem is None:
            env["ARMILLARY_RELEASE"] = reference
    elif isinstance(component.command, str) and component.args:
        # A string runs under sh; its args arrive as "$@".
        command = ("sh", "-c", f'{component.command} "$@"', "sh", *component.args)
    elif isinstance(component.command, str):
        command = ("sh", "-c", component.command)
    elif component.command is not None:
        command = (*component.command, *component.args)
    else:
        problem = (
            f"image {component.image}: the nodes runtime runs processes; "
            "images need a container runtime"
        )
    # An image is a problem for the nodes runtime only: a container runtime clears it
    # (`image_problem`). A missing Secret is one for every runtime, so it comes first.
    image_problem = image is not None and problem is not None
    secret_env, missing = _secret_env(tenant, component, secrets)
    if missing is not None and (problem is None or image_problem):
        problem, image_problem = missing, False
    restart = component.restart.model_dump(mode="json")
    if restart["policy"] is None:
        restart["policy"] = "always" if component.type == "service" else "on-failure"
    resources = component.resources
    return Template(
        component=component.name,
        type=component.type,
        replicas=replicas if component.type == "service" else 1,
        command=command,
        cwd=cwd,
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
        release=reference,
        checkout=checkout,
        policy=Policy(**component.rollout.model_dump()),
        secrets=secret_env,
        node_labels=dict(component.node_labels),
        image=image,
        image_problem=image_problem,
        exposure=component.exposure,
        on_node_lost=component.on_node_lost,
    )


def _image_of(reference: str, releases: Mapping[str, Release]) -> str | None:
    """The image reference of a recorded release's image artifact, pinned to its digest
    when the record has one; None for a process artifact or an unrecorded release."""
    record = releases.get(release_name(*reference.split("@", 1)))
    artifact = record.spec.artifact.image if record is not None else None
    if artifact is None:
        return None
    image = f"{artifact.registry}/{artifact.repository}:{artifact.tag}"
    return f"{image}@{artifact.digest}" if artifact.digest else image


def _secret_env(
    tenant: Tenant, component: Component, secrets: Mapping[str, str]
) -> tuple[tuple[SecretEnv, ...], str | None]:
    """The Secrets `component` receives, and the problem if one is not available."""
    uses = [u for u in tenant.spec.secrets if not u.components or component.name in u.components]
    for use in uses:
        if use.name not in secrets:
            return (), (
                f"secret {use.name!r} does not exist, or belongs to another tenant; "
                "apply it (with no spec.tenant, or this tenant's name)"
            )
    env = tuple(SecretEnv(secret=u.name, prefix=u.prefix, version=secrets[u.name]) for u in uses)
    return env, None


def _from_release(
    reference: str, component: Component, releases: Mapping[str, Release]
) -> tuple[tuple[str, ...], str | None, tuple[str, str] | None, str | None]:
    """(command, cwd, checkout, problem) of a component running `reference`."""
    name, _, version = reference.partition("@")
    record = releases.get(release_name(name, version))
    if record is None:
        return (), None, None, f"release {reference} is not recorded"
    process = record.spec.artifact.process
    if process is None:
        return (
            (),
            None,
            None,
            (
                f"release {reference} is a container image; the nodes runtime runs process "
                "artifacts, images need a container runtime"
            ),
        )
    repository = record.spec.git.repository
    if repository is None:
        return (
            (),
            None,
            None,
            (
                f"release {reference} names no git.repository, so no node can check out "
                f"{record.spec.git.tag}"
            ),
        )
    command = (*process.command, *component.args)
    return command, process.cwd, (repository, record.spec.git.commit), None
