"""`Stack`: the template of what one tenant runs — its components.

A component is a `service` (long-running, replicated, health-checked, restarted) or
a `job` (runs to completion: seed and bootstrap work). It names what to run: a
`release: <component>@<version>`, an inline `command`, or an `image`.
Cross-component rules (unique names, known `depends_on` targets, no cycles) are
checked by `issues()`, which reports each problem at its own field path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from armillary.resources import quantity, semver
from armillary.resources.meta import Document, LabelKey, LabelValue, Model, Name, check_name

COMPONENT_NAME_MAX = 48
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Loc = tuple[str | int, ...]


def _check_component_name(value: str) -> str:
    if len(value) > COMPONENT_NAME_MAX:
        raise ValueError(
            f"expected a component name of at most {COMPONENT_NAME_MAX} characters "
            f"(room is kept for the tenant hash), got {len(value)}"
        )
    return value


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"expected an environment variable name like LOG_LEVEL, got {value!r}")
    return value


ComponentName = Annotated[
    Name,
    AfterValidator(_check_component_name),
    Field(json_schema_extra={"maxLength": COMPONENT_NAME_MAX}),  # what the check allows
]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
Env = dict[EnvName, str]


def check_release_ref(value: str) -> str:
    """`<component>@<semver>`, e.g. `agent@1.4.0`."""
    component, sep, version = value.partition("@")
    if not sep or not component:
        raise ValueError(f"expected a release reference '<component>@<version>', got {value!r}")
    check_name(component)
    semver.parse(version)
    return value


ReleaseRef = Annotated[str, AfterValidator(check_release_ref)]
PortRef = Annotated[str, Field(min_length=1)] | Annotated[int, Field(ge=1, le=65535)]


class Port(Model):
    """A port the component listens on. The node gives it a free port unless `port` is set."""

    name: Name
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    protocol: Literal["http", "tcp"] = "http"


class HttpProbe(Model):
    path: Annotated[str, Field(pattern=r"^/")] = "/healthz"
    port: PortRef | None = None
    expect_status: Annotated[int, Field(ge=100, le=599)] | None = None


class TcpProbe(Model):
    port: PortRef | None = None


class ExecProbe(Model):
    command: Annotated[list[str], Field(min_length=1)]


class HealthCheck(Model):
    """Exactly one of `http`, `tcp` or `exec`, with its timing."""

    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    exec: ExecProbe | None = None
    interval_s: Annotated[float, Field(gt=0, le=3600)] = 10
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 2
    start_period_s: Annotated[float, Field(ge=0, le=3600)] = 0
    success_threshold: Annotated[int, Field(ge=1, le=100)] = 1
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3

    @model_validator(mode="after")
    def _one_probe(self) -> HealthCheck:
        probes = [p for p in (self.http, self.tcp, self.exec) if p is not None]
        if len(probes) != 1:
            raise ValueError("expected exactly one of http, tcp or exec")
        return self


class Restart(Model):
    """When a process that exits is started again, and how fast."""

    policy: Literal["always", "on-failure", "never"] | None = None
    backoff_initial_s: Annotated[float, Field(ge=0, le=3600)] = 0.5
    backoff_max_s: Annotated[float, Field(gt=0, le=86400)] = 60
    crash_loop_after: Annotated[int, Field(ge=1, le=1000)] = 5


class Resources(Model):
    """What one replica asks of its node: CPU (cores or millicores) and memory."""

    cpu: float | str | None = None
    memory: int | str | None = None

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _not_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(f"expected a quantity such as 0.5, '500m' or '256Mi', got {value!r}")
        return value

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: float | str | None) -> float | str | None:
        if value is not None:
            quantity.cpu_millicores(value)
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            quantity.memory_mb(value)
        return value


class RolloutPolicy(Model):
    """How a change to a component reaches its replicas, and its tenants.

    Within one tenant: at most `max_surge` replicas above `replicas` and at most
    `max_unavailable` below it while replacing (a fixed port cannot surge: it is
    replaced stop-first, one at a time). A change that has not become healthy within
    `progress_deadline_s`, or whose new replicas fail, is rolled back to the last
    revision that was (`auto_rollback`). A new replica that crash-loops or fails ends the
    change at once; one failing its health check ends it once the change is
    `unhealthy_grace_s` old, so a slow start on a busy machine is not a broken release.
    Across tenants, a new release of the component starts in at most
    `max_parallel_tenants` at a time, and in no more once it has failed in one.
    """

    max_surge: Annotated[int, Field(ge=0, le=1000)] = 1
    max_unavailable: Annotated[int, Field(ge=0, le=1000)] = 0
    progress_deadline_s: Annotated[float, Field(gt=0, le=86400)] = 600
    unhealthy_grace_s: Annotated[float, Field(ge=0, le=86400)] = 30
    max_parallel_tenants: Annotated[int, Field(ge=1, le=10000)] = 1
    auto_rollback: bool = True

    @model_validator(mode="after")
    def _can_move(self) -> RolloutPolicy:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError("max_surge and max_unavailable cannot both be 0: nothing could move")
        return self


class Component(Model):
    """One component of a stack."""

    name: ComponentName
    type: Literal["service", "job"] = "service"
    release: ReleaseRef | None = None
    command: (
        Annotated[list[str], Field(min_length=1)] | Annotated[str, Field(min_length=1)] | None
    ) = None
    image: Annotated[str, Field(min_length=1)] | None = None
    args: list[str] = Field(default_factory=list)
    cwd: str | None = None
    env: Env = Field(default_factory=dict)
    ports: list[Port] = Field(default_factory=list)
    replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    health_check: HealthCheck | None = None
    restart: Restart = Field(default_factory=Restart)
    resources: Resources = Field(default_factory=Resources)
    # Labels a node must carry (every one, exactly) for a replica to be placed on it.
    node_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    exposure: Literal["public", "internal"] = "internal"
    depends_on: list[Name] = Field(default_factory=list)
    stop_grace_s: Annotated[float, Field(ge=0, le=3600)] = 10
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
    on_node_lost: Literal["replace", "wait"] = Field(
        default="replace",
        description="What becomes of a replica whose node is declared lost (silent for the "
        "server's `node_lost_after_s`): `replace` starts it on another node at once; `wait` "
        "keeps it where it was until the node comes back, for a sole writer that must never "
        "run twice. Changing it restarts nothing",
    )

    @model_validator(mode="after")
    def _one_artifact(self) -> Component:
        given = [k for k in ("release", "command", "image") if getattr(self, k) is not None]
        if len(given) != 1:
            got = ", ".join(given) if given else "none"
            raise ValueError(f"expected exactly one of release, command or image (got {got})")
        return self


class StackSpec(Model):
    description: str = ""
    components: Annotated[list[Component], Field(min_length=1)]

    def issues(self) -> Iterator[tuple[Loc, str]]:
        """Rules that span components, each at the field path it concerns."""
        first_index: dict[str, int] = {}
        for i, component in enumerate(self.components):
            if component.name in first_index:
                yield (
                    ("components", i, "name"),
                    f"duplicate component name {component.name!r} "
                    f"(first used by components[{first_index[component.name]}])",
                )
            else:
                first_index[component.name] = i
        for i, component in enumerate(self.components):
            yield from _component_issues(i, component, first_index)
        if len(first_index) == len(self.components):  # cycles are only defined on unique names
            yield from _cycle_issues(self.components, first_index)


def _component_issues(
    i: int, component: Component, index: dict[str, int]
) -> Iterator[tuple[Loc, str]]:
    port_names = [p.name for p in component.ports]
    for j, name in enumerate(port_names):
        if name in port_names[:j]:
            yield ("components", i, "ports", j, "name"), f"duplicate port name {name!r}"
    for j, dep in enumerate(component.depends_on):
        if dep not in index:
            yield (
                ("components", i, "depends_on", j),
                f"unknown component {dep!r}; expected one of {sorted(index)}",
            )
        elif dep == component.name:
            yield ("components", i, "depends_on", j), "a component cannot depend on itself"
    if component.type == "job" and component.replicas != 1:
        yield ("components", i, "replicas"), "jobs run once per tenant; replicas is for services"
    check = component.health_check
    if check is not None:
        probe = check.http or check.tcp
        port = getattr(probe, "port", None)
        if isinstance(port, str) and port not in port_names:
            sub = "http" if check.http else "tcp"
            yield (
                ("components", i, "health_check", sub, "port"),
                f"unknown port {port!r}; expected one of {port_names} or a number",
            )


def _cycle_issues(components: list[Component], index: dict[str, int]) -> Iterator[tuple[Loc, str]]:
    graph = {c.name: [d for d in c.depends_on if d in index and d != c.name] for c in components}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    reported: set[frozenset[str]] = set()

    def visit(name: str, path: list[str]) -> Iterator[tuple[Loc, str]]:
        state[name] = 1
        for dep in graph[name]:
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    j = components[index[name]].depends_on.index(dep)
                    yield (
                        ("components", index[name], "depends_on", j),
                        f"depends_on cycle: {' -> '.join(cycle)}",
                    )
            elif dep not in state:
                yield from visit(dep, [*path, dep])
        state[name] = 2

    for component in components:
        if component.name not in state:
            yield from visit(component.name, [component.name])


class Stack(Document[StackSpec]):
    kind: Literal["Stack"]
