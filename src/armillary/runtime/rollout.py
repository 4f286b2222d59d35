"""One step of convergence for one tenant on the nodes runtime: pure.

`step(instance, current)` compares the templates with the allocations that exist
and returns what to create and what to remove *now*, plus what it saw per
component (for status). Called again after every change, it walks a tenant to its
desired state one safe move at a time:

- components start in `depends_on` order: a service waits until each dependency
  has a ready replica (a job: has succeeded), and only dependencies' URLs are
  injected (`<DEP>_URL`), so URLs never form a cycle of restarts;
- a missing replica is created at once; a replica whose spec changed is replaced
  surge-first — its successor is created, and only once that successor is ready is
  the old one removed — one replica of a component at a time;
- replicas beyond `replicas`, and every replica of a component or tenant no longer
  wanted, are removed;
- a service replica on a node being drained (`Current.node_state == "draining"`) is
  moved like a changed one: its successor, of the same spec, goes to another node
  (the drained node is cordoned), and it is removed once that successor is ready,
  within the same budgets. A job's replica there is left to finish (the drain's
  deadline stops it, `control.drains`).
- a replica whose node was declared lost (`node_state == "lost"`) is never ready. With
  `on_node_lost: replace` it is removed and its successor created in the same step —
  not surge-first: the old copy is dead, or fenced off (its node stops it when it comes
  back, as it is no longer in its set); a job that has succeeded there is kept. With
  `wait` its slot is held: nothing is created for it and it is not removed to make room
  (a successor could run beside it), until its node comes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from armillary.runtime.instance import Instance, Template, url_variable


@dataclass(frozen=True, slots=True, kw_only=True)
class Current:
    """An allocation as the runtime sees it."""

    id: str
    component: str
    replica: int
    spec_hash: str
    state: str | None  # the node's last report; None before the first
    healthy: bool | None = None
    url: str | None = None  # http://address:first-port, when it has a port
    reason: str | None = None
    message: str | None = None
    restarts: int = 0
    node: str = ""
    node_state: str = "ready"  # of its node: ready | draining | lost

    @property
    def ready(self) -> bool:
        return (
            self.state in ("running", "succeeded")
            and self.healthy is not False
            and self.node_state != "lost"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Create:
    template: Template
    replica: int
    spec_hash: str
    extra_env: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """What one component looks like now."""

    desired: int
    ready: int = 0  # ready replicas on the current spec
    updated: int = 0  # replicas on the current spec, ready or not
    total: int = 0
    waiting_for: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # why replicas are not ready: crash loops, bad commands, …
    failing: tuple[str, ...] = ()  # replicas on the current spec that crash-loop or failed
    unhealthy: tuple[str, ...] = ()  # replicas on the current spec failing their health check
    job: bool = False
    done: bool = False  # jobs: succeeded on the current spec


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    create: list[Create] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)  # allocation ids
    components: dict[str, Observed] = field(default_factory=dict)

    @property
    def idle(self) -> bool:
        return not self.create and not self.remove


_TROUBLED = ("crashloop", "failed", "unhealthy", "backoff")
_BROKEN = ("crashloop", "failed")  # a new revision with a replica here has failed


def step(instance: Instance | None, current: Sequence[Current]) -> Step:
    """The next safe moves for one tenant. `instance=None`: the tenant is gone."""
    if instance is None:
        return Step(remove=[c.id for c in current])
    result = Step()
    wanted = {t.component for t in instance.templates}
    result.remove.extend(c.id for c in current if c.component not in wanted)
    ready_url: dict[str, str | None] = {}
    satisfied: set[str] = set()
    for template in _dependency_order(instance.templates):
        mine = [c for c in current if c.component == template.component]
        observed, url = _component(template, mine, ready_url, satisfied, result)
        result.components[template.component] = observed
        ready_url[template.component] = url
        if (
            observed.done
            or (template.type == "service" and url is not None)
            or (template.type == "service" and not template.ports and observed.ready > 0)
        ):
            satisfied.add(template.component)
    return result


def _dependency_order(templates: Sequence[Template]) -> list[Template]:
    """Dependencies before their dependents, otherwise in stack order (the Stack was
    validated free of cycles; a name that is not there is left to the end)."""
    by_name = {t.component: t for t in templates}
    ordered: list[Template] = []
    placed: set[str] = set()

    def visit(template: Template, path: frozenset[str]) -> None:
        if template.component in placed or template.component in path:
            return
        for dependency in template.depends_on:
            if dependency in by_name:
                visit(by_name[dependency], path | {template.component})
        placed.add(template.component)
        ordered.append(template)

    for template in templates:
        visit(template, frozenset())
    return ordered


def _component(
    template: Template,
    mine: list[Current],
    ready_url: dict[str, str | None],
    satisfied: set[str],
    result: Step,
) -> tuple[Observed, str | None]:
    desired = template.replicas
    waiting = tuple(d for d in template.depends_on if d not in satisfied)
    mine, held = _lost(template, mine, result)
    if template.problem is not None:
        result.remove.extend(c.id for c in mine)
        return Observed(
            desired=desired, job=template.type == "job", problems=(template.problem,)
        ), None
    extra_env = {url_variable(d): u for d in template.depends_on if (u := ready_url.get(d))}
    spec_hash = template.spec_hash(extra_env)
    fresh = [c for c in mine if c.spec_hash == spec_hash]
    stale = [c for c in mine if c.spec_hash != spec_hash]
    problems = tuple(_problem(c) for c in mine if c.state in _TROUBLED or c.node_state == "lost")
    # A replica being moved off a drained node and its successor share a slot and a
    # spec: counted once, and the successor's URL preferred once it is ready.
    ready = sorted((c for c in fresh if c.ready), key=lambda c: (c.replica, _leaving(c, template)))
    observed = Observed(
        desired=desired,
        ready=len({c.replica for c in ready}),
        updated=len({c.replica for c in fresh}),
        total=len(mine),
        waiting_for=waiting,
        problems=problems,
        failing=tuple(_problem(c) for c in fresh if c.state in _BROKEN),
        unhealthy=tuple(_problem(c) for c in fresh if c.state == "unhealthy"),
        job=template.type == "job",
        done=template.type == "job" and any(c.state == "succeeded" for c in fresh),
    )
    # Dependents get replica 0's URL, and wait for it: a URL taken from whichever replica
    # was ready first would change once replica 0 is up, and restart every dependent.
    first = [c for c in ready if c.replica == 0]
    url = first[0].url if first else None
    if waiting:
        return observed, url  # nothing new until dependencies are ready; keep what runs
    # Fresh replicas leaving a drained node are replaced as stale ones are.
    stale += [c for c in fresh if _leaving(c, template)]
    fresh = [c for c in fresh if not _leaving(c, template)]
    by_slot = {c.replica: c for c in sorted(fresh, key=lambda c: c.id)}
    # Beyond the desired count: remove (fresh duplicates of a slot too).
    result.remove.extend(c.id for c in fresh if c.replica >= desired or by_slot[c.replica] is not c)
    result.remove.extend(c.id for c in stale if c.replica >= desired)
    moves = len(result.create), len(result.remove)
    _replace(
        template,
        desired,
        by_slot,
        [c for c in stale if c.replica < desired],
        result,
        spec_hash,
        extra_env,
    )
    if held:
        _hold(held, desired, fresh, result, since=moves)
    return observed, url


def _lost(
    template: Template, mine: list[Current], result: Step
) -> tuple[list[Current], list[Current]]:
    """Replicas on lost nodes: with `replace`, removed now (not those of a job that has
    succeeded: it is done) and left out of what the step sees, so their slots are
    filled at once; with `wait`, returned as held. The replicas the step goes on with,
    and the held ones."""
    lost = [c for c in mine if c.node_state == "lost" and c.state != "succeeded"]
    if not lost:
        return mine, []
    if template.on_node_lost == "wait":
        return mine, lost
    result.remove.extend(c.id for c in lost)
    gone = {c.id for c in lost}
    return [c for c in mine if c.id not in gone], []


def _hold(
    held: list[Current], desired: int, fresh: list[Current], result: Step, *, since: tuple[int, int]
) -> None:
    """`on_node_lost: wait`: undo what this component's moves (from index `since` on)
    would do to a held replica's slot — no successor created, the held replica not
    removed — unless the slot is going away or a ready successor already runs
    elsewhere (then two copies exist already, and removing the held one stops one)."""
    slots = {c.replica for c in held if c.replica < desired}
    covered = {c.replica for c in fresh if c.ready}
    frozen = slots - covered
    creates, removes = since
    result.create[creates:] = [c for c in result.create[creates:] if c.replica not in frozen]
    keep = {c.id for c in held if c.replica in frozen}
    result.remove[removes:] = [i for i in result.remove[removes:] if i not in keep]


def _replace(
    template: Template,
    desired: int,
    by_slot: dict[int, Current],
    stale: list[Current],
    result: Step,
    spec_hash: str,
    extra_env: dict[str, str],
) -> None:
    """Moves within the surge and availability budgets, slot by slot (Kubernetes'
    maxSurge/maxUnavailable): live replicas never exceed `desired + max_surge`, and a
    ready one is removed only while `desired - max_unavailable` stay ready. A fixed
    port cannot be held by the old and the new replica at once: those are replaced
    stop-first (no surge, at least one unavailable allowed)."""
    fixed_port = any(port is not None for _, port in template.ports)
    max_surge = 0 if fixed_port else template.policy.max_surge
    max_unavailable = max(template.policy.max_unavailable, 0 if max_surge else 1)
    live = [by_slot[s] for s in by_slot if s < desired] + stale
    total = len(live)
    ready = sum(1 for c in live if c.ready)
    pending: list[list[Current]] = []
    for slot in range(desired):
        old = [c for c in stale if c.replica == slot]
        new = by_slot.get(slot)
        if new is None and not old:
            result.create.append(_create(template, slot, spec_hash, extra_env))
            total += 1
        elif new is not None and new.ready and old:
            result.remove.extend(c.id for c in old)
            total -= len(old)
            ready -= sum(1 for c in old if c.ready)
        elif new is None:
            pending.append(old)
    for old in pending:
        losing = sum(1 for c in old if c.ready)
        if max_surge and total < desired + max_surge:
            result.create.append(_create(template, old[0].replica, spec_hash, extra_env))
            total += 1
        elif ready - losing >= desired - max_unavailable:
            result.remove.extend(c.id for c in old)
            total -= len(old)
            ready -= losing
        else:
            break  # in slot order: later slots wait their turn


def _leaving(current: Current, template: Template) -> bool:
    """A service replica on a node being drained: to be moved elsewhere. (A job's is
    left to finish where it runs.)"""
    return current.node_state == "draining" and template.type != "job"


def _create(template: Template, slot: int, spec_hash: str, extra_env: dict[str, str]) -> Create:
    return Create(template=template, replica=slot, spec_hash=spec_hash, extra_env=extra_env)


def _problem(current: Current) -> str:
    if current.node_state == "lost":
        return f"replica {current.replica} waits for node {current.node} (lost)"
    what = current.reason or current.state or "unknown"
    if current.state in ("backoff", "crashloop"):
        # Messages there count crashes and seconds; status must not change on every crash.
        return f"replica {current.replica} {current.state} ({what})"
    # The first clause is the cause ("port 8080 (http) is in use on 127.0.0.1"); what
    # follows counts retries and seconds, which would rewrite status on every retry.
    cause = current.message.split("; ", 1)[0] if current.message else ""
    detail = f": {cause}" if cause else ""
    return f"replica {current.replica} {current.state} ({what}{detail})"


def unique(ids: Iterable[str]) -> list[str]:
    """Ids in first-seen order, each once."""
    return list(dict.fromkeys(ids))
