"""`GET /metrics`: the Prometheus exposition (docs/metrics.md).

On the main port, for a viewer: Prometheus scrapes with a viewer API key
(`authorization: {credentials_file: …}` in its scrape config). One port to expose,
put behind TLS and firewall, and one kind of credential to issue and revoke; the
figures (how many tenants, which nodes, which webhook sources) are not for
anonymous callers, and a viewer may read all of them through the API anyway.

What code counts as it happens comes from prometheus-client's default registry
(`armillary.metrics`, plus the process and GC collectors); what the store holds is
read now (`store.gauges`), in one read transaction, and appended.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Iterator, Mapping, Sequence

from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from armillary import metrics
from armillary.api import openapi
from armillary.api.security import Viewer
from armillary.errors import NotFound
from armillary.protocol import ReplicaState
from armillary.store import agent_runs, gauges
from armillary.store.database import Database

router = APIRouter(tags=["health"])

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The text format every Prometheus since 2.0 reads (Debian 12's is 2.42)."""

REPLICA_STATES = (*typing.get_args(ReplicaState), gauges.UNREPORTED)
ROLLOUT_STATES = ("progressing", "complete", "failed", "superseded")
NODE_STATES = ("connected", "disconnected", "cordoned", "draining", "drained", "lost")
CONDITIONS = tuple((c, s) for c in ("Ready", "Progressing", "Degraded") for s in ("true", "false"))
PROVISIONING_STATES = ("pending", "running", "succeeded", "failed", "rolled-back")
"""Series answered even at 0, so a rule or a panel sees 0 rather than nothing."""


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
            "description": "The exposition",
        },
        **openapi.declared(404),
    },
)
async def scrape(request: Request, _who: Viewer) -> Response:
    """Every Armillary metric in Prometheus's text format."""
    if not metrics.enabled:
        raise NotFound("metrics are off (ARMILLARY_METRICS=false)")
    return Response(await exposition(request.app.state.db), media_type=CONTENT_TYPE)


async def exposition(db: Database) -> bytes:
    """The whole answer's body: the counted metrics, then the store's figures read now
    (bench/metrics_bench.py measures this at fleet size)."""
    async with db.read() as conn:
        fleet = await gauges.read(conn, now=dt.datetime.now(dt.UTC))
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(FleetCollector(fleet, db.pool_status()))
    return generate_latest(REGISTRY) + generate_latest(scraped)


class FleetCollector(Collector):
    """The store's figures as read for one scrape."""

    def __init__(self, fleet: gauges.Fleet, pools: dict[str, tuple[int, int]]) -> None:
        self.fleet = fleet
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        f = self.fleet
        yield _gauge("armillary_tenants", "Tenants", [], [((), f.tenants)])
        yield _gauge(
            "armillary_tenant_conditions",
            "Tenants by status condition (Ready, Progressing, Degraded) and its status",
            ["condition", "status"],
            _with(f.tenant_conditions, CONDITIONS),
        )
        yield _gauge(
            "armillary_replicas",
            "Replicas by the state their node last reported (unreported: none yet)",
            ["state"],
            _by_state(f.replicas, REPLICA_STATES),
        )
        yield _gauge(
            "armillary_replica_restarts",
            "Restarts of the replicas that exist now, summed (a replica's count since placed)",
            [],
            [((), f.restarts)],
        )
        yield _gauge(
            "armillary_rollouts",
            "Rollout revisions by state (progressing, complete, failed, superseded)",
            ["state"],
            _by_state(f.rollouts, ROLLOUT_STATES),
        )
        yield _gauge(
            "armillary_rollout_oldest_progressing_age_seconds",
            "How long the oldest rollout still progressing has run (0: none)",
            [],
            [((), f.oldest_progressing_s)],
        )
        yield _gauge(
            "armillary_nodes",
            "Nodes by state (connected, disconnected; cordoned, draining, drained and lost count "
            "again)",
            ["state"],
            _by_state(f.nodes, NODE_STATES),
        )
        yield _gauge(
            "armillary_node_connected",
            "1 while the node holds its connection to the server, else 0",
            ["node"],
            [((node,), int(up)) for node, up in sorted(f.node_connected.items())],
        )
        yield _gauge(
            "armillary_node_heartbeat_age_seconds",
            "Time since the node's last heartbeat reached the server",
            ["node"],
            [((node,), age) for node, age in sorted(f.node_heartbeat_age_s.items())],
        )
        yield _gauge(
            "armillary_agent_runs",
            "Agent runs by state (queued, running, succeeded, failed, dead)",
            ["state"],
            _by_state(f.agent_runs, agent_runs.STATES),
        )
        yield _gauge(
            "armillary_agent_run_queue_depth",
            "Agent runs due now and not yet claimed",
            [],
            [((), f.agent_run_queue_depth)],
        )
        yield _gauge(
            "armillary_provisioning_runs",
            "Provisioning runs by state",
            ["state"],
            _by_state(f.provisioning_runs, PROVISIONING_STATES),
        )
        yield _gauge(
            "armillary_db_pool_connections",
            "Database connections of each pool, by state (in_use, idle)",
            ["pool", "state"],
            [((pool, "in_use"), used) for pool, (used, _) in sorted(self.pools.items())]
            + [((pool, "idle"), idle) for pool, (_, idle) in sorted(self.pools.items())],
        )


def _gauge(
    name: str,
    documentation: str,
    labels: list[str],
    samples: Sequence[tuple[tuple[str, ...], float]],
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def _with(
    counted: Mapping[tuple[str, ...], int], known: Sequence[tuple[str, ...]]
) -> list[tuple[tuple[str, ...], float]]:
    keys = sorted(set(counted) | set(known))
    return [(key, counted.get(key, 0)) for key in keys]


def _by_state(
    counted: Mapping[str, int], known: Sequence[str]
) -> list[tuple[tuple[str, ...], float]]:
    return _with({(state,): n for state, n in counted.items()}, [(state,) for state in known])
