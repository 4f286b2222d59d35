"""What each live channel watches, and how it is read from the store.

A source is one stream of items the hub keeps track of: `resources:<Kind>` for each
kind, `replicas`, `nodes`, `events`, `runs:agent`, `runs:provision`, `rollouts`.
`route` maps a change of the feed to the (source, key) pairs it may have changed:
the feed only says where to look. `load_some` re-reads those keys, all of a burst in
one read transaction; `load_all` lists a cached source's whole present state once,
when its first subscriber comes. Documents are the ones the REST routes answer, made
by the same functions, so a frame's item is what `GET` shows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from armillary.api.live import frames
from armillary.api.live.frames import Item
from armillary.api.routes.agent_runs import run_document as agent_run_document
from armillary.api.routes.events import event_document
from armillary.api.routes.nodes import node_document
from armillary.api.routes.provision import run_document as provision_run_document
from armillary.api.routes.replicas import replica_document
from armillary.api.routes.rollouts import revision_document
from armillary.errors import NotFound
from armillary.resources import kinds
from armillary.store import (
    agent_runs,
    allocations,
    events,
    feed,
    nodes,
    provisioning_runs,
    repository,
    rollouts,
)
from armillary.store.database import Database, Tx

RESOURCE = "resources:"


def route(change: feed.Change) -> list[tuple[str, str]]:
    """The (source, key) pairs `change` may have changed."""
    kind = change.kind
    if kind in kinds.BY_NAME:
        return [(RESOURCE + kind, change.name)]
    if kind == "Allocation":
        found = [("replicas", change.name)]
        if change.node:  # the node's count of replicas
            found.append(("nodes", change.node))
        return found
    if kind == "Node":
        return [("nodes", change.name)]
    if kind == events.KIND:
        return [("events", change.name)]
    if kind == "AgentRun":
        return [("runs:agent", change.name)]
    if kind == "ProvisionRun":
        return [("runs:provision", change.name)]
    if kind == "Rollout" and change.tenant:
        return [("rollouts", change.tenant)]
    return []


def _resource(source: str, stored: repository.Stored) -> Item:
    return frames.item(source, stored.name, stored.owner(), stored.document(), stored.labels)


def _replica(allocation: allocations.Allocation, node: nodes.Node | None) -> Item:
    doc = replica_document(allocation, node=node)
    return frames.item("replicas", allocation.id, allocation.tenant, doc, None)


def _node(node: nodes.Node, replicas: int) -> Item:
    return frames.item("nodes", node.name, None, node_document(node, replicas), node.labels)


async def load_all(conn: Tx, source: str) -> list[Item]:
    """The whole present state of a cached source."""
    if source.startswith(RESOURCE):
        return [
            _resource(source, s)
            for s in await repository.list_kind(conn, source.removeprefix(RESOURCE))
        ]
    if source == "replicas":
        by_name = {n.name: n for n in await nodes.list_all(conn)}
        return [_replica(a, by_name.get(a.node)) for a in await allocations.list_all(conn)]
    if source == "nodes":
        counts = Counter(a.node for a in await allocations.list_all(conn))
        return [_node(n, counts[n.name]) for n in await nodes.list_all(conn)]
    raise ValueError(f"{source} keeps no present state")


async def load_some(db: Database, conn: Tx, source: str, keys: Collection[str]) -> list[Item]:
    """The items of `keys` as they are now (a key without one: gone)."""
    if source.startswith(RESOURCE):
        found = await repository.get_many(conn, source.removeprefix(RESOURCE), keys)
        return [_resource(source, s) for s in found.values()]
    if source == "replicas":
        held = [a for key in keys if (a := await allocations.get(conn, key)) is not None]
        by_name = {
            n.name: n
            for name in {a.node for a in held}
            if (n := await nodes.get(conn, name)) is not None
        }
        return [_replica(a, by_name.get(a.node)) for a in held]
    if source == "nodes":
        items = []
        for key in keys:
            node = await nodes.get(conn, key)
            if node is not None:
                items.append(_node(node, len(await allocations.for_node(conn, key))))
        return items
    if source == "events":
        found_events = await events.get_many(conn, keys)
        return [
            frames.item("events", e.id, e.tenant, event_document(e), None)
            for e in found_events.values()
        ]
    if source == "runs:agent":
        runs = []
        for key in keys:
            try:
                run = await agent_runs.get(conn, key)
            except NotFound:
                continue
            runs.append(frames.item(source, run.id, run.tenant, agent_run_document(run), None))
        return runs
    if source == "runs:provision":
        provisions = []
        for key in keys:
            try:
                found_run = await provisioning_runs.get(db, key)
            except NotFound:
                continue
            doc = provision_run_document(found_run)
            provisions.append(frames.item(source, found_run.id, found_run.tenant, doc, None))
        return provisions
    if source == "rollouts":
        return [item for tenant in keys for item in await _newest_revisions(conn, tenant)]
    raise ValueError(f"unknown source {source}")


async def _newest_revisions(conn: Tx, tenant: str) -> list[Item]:
    """A tenant's newest revision of each component: what a rollout change concerns
    (an older one is superseded and no longer moves)."""
    newest: dict[str, rollouts.Revision] = {}
    for revision in await rollouts.history(conn, tenant):
        if (
            revision.component not in newest
            or revision.revision > newest[revision.component].revision
        ):
            newest[revision.component] = revision
    return [
        frames.item(
            "rollouts", f"{tenant}/{r.component}/{r.revision}", tenant, revision_document(r), None
        )
        for r in newest.values()
    ]
