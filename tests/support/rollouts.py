"""Building blocks for the rollout and revision tables: a component's template, a
tenant's instance, and a replica as the runtime currently has it."""

from __future__ import annotations

from armillary.runtime.instance import Instance, Policy, Template
from armillary.runtime.rollout import Current


def template(
    name: str,
    *,
    replicas: int = 1,
    type: str = "service",
    env: dict[str, str] | None = None,
    depends_on: tuple[str, ...] = (),
    ports: tuple[tuple[str, int | None], ...] = (("http", None),),
    problem: str | None = None,
    on_node_lost: str = "replace",
    max_surge: int = 1,
) -> Template:
    return Template(
        component=name,
        type=type,
        replicas=replicas,
        command=("sleep", "1000"),
        cwd=None,
        env=env or {},
        ports=ports,
        health_check=None,
        restart={"policy": "always"},
        stop_grace_s=1,
        timeout_s=None,
        depends_on=depends_on,
        cpu_millicores=0,
        memory_mb=0,
        problem=problem,
        on_node_lost=on_node_lost,
        policy=Policy(max_surge=max_surge, max_unavailable=0 if max_surge else 1),
    )


def instance(*templates: Template) -> Instance:
    return Instance(tenant="acme", templates=templates)


def current(
    t: Template,
    replica: int,
    *,
    state: str | None = "running",
    id: str | None = None,
    spec_hash: str | None = None,
    url: str | None = None,
    extra: dict[str, str] | None = None,
    node: str = "n1",
    node_state: str = "ready",
) -> Current:
    return Current(
        id=id or f"{t.component}-{replica}-{state}",
        component=t.component,
        replica=replica,
        spec_hash=spec_hash or t.spec_hash(extra),
        state=state,
        url=url,
        node=node,
        node_state=node_state,
    )
