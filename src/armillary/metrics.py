"""The server's Prometheus instruments, in one place (docs/metrics.md names them all).

Counters and histograms that code increments as things happen live here, at module
level, in prometheus-client's default registry: the controllers, the work queues,
webhook ingress, group commit, agent runs, provisioning, schedules and the database.
What the store holds (tenants by condition, replicas by state, rollouts, nodes,
runs) is not counted here: `GET /metrics` reads it at scrape time
(`store/gauges.py`), so two server replicas never disagree and a restart loses
nothing.

Labels are bounded on purpose: route *templates*, status classes, controller and
queue names, webhook source names (resources an admin creates) and fixed outcome
words. No tenant, replica or event id is ever a label (docs/metrics.md, the
cardinality rule). `_created` series are off: they double the exposition for
nothing Prometheus's `rate()` needs.

This module imports nothing of Armillary's, so every layer may count.
"""

from __future__ import annotations

import platform

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram, Info

from armillary import __version__

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""For work measured in milliseconds: a request, a query, a commit, a reconcile."""
SLOW_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""For work measured in seconds: an agent call, a provisioning step."""

enabled = True
"""False when `ARMILLARY_METRICS=false`: the HTTP layer and the query listener are not
installed and `/metrics` answers 404 (the ingress benchmark's "off")."""

BUILD = Info("armillary_build", "The running Armillary: its version and Python")
BUILD.info({"version": __version__, "python": platform.python_version()})

HTTP_REQUESTS = Counter(
    "armillary_http_requests_total",
    "HTTP requests answered, by method, route template and status class (2xx, 4xx, …)",
    ["method", "route", "status_class"],
)
HTTP_DURATION = Histogram(
    "armillary_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template",
    ["method", "route"],
    buckets=FAST_BUCKETS,
)

LEADER = Gauge(
    "armillary_leader",
    "1 on the server replica that leads (runs the controllers), 0 on the others",
)
WORKQUEUE_DEPTH = Gauge(
    "armillary_workqueue_depth", "Keys due in a controller's work queue", ["name"]
)
WORKQUEUE_ADDS = Counter(
    "armillary_workqueue_adds_total", "Keys added to a controller's work queue", ["name"]
)
WORKQUEUE_RETRIES = Counter(
    "armillary_workqueue_retries_total",
    "Keys queued again after a failed reconcile",
    ["name"],
)
WORKQUEUE_WORK_DURATION = Histogram(
    "armillary_workqueue_work_duration_seconds",
    "Time a worker spends on one key taken from the queue",
    ["name"],
    buckets=FAST_BUCKETS,
)
RECONCILES = Counter(
    "armillary_controller_reconcile_total",
    "Reconciles, by controller and result (success, requeue_after, error)",
    ["controller", "result"],
)
RECONCILE_ERRORS = Counter(
    "armillary_controller_reconcile_errors_total", "Reconciles that raised", ["controller"]
)
RECONCILE_TIME = Histogram(
    "armillary_controller_reconcile_time_seconds",
    "Time one reconcile takes",
    ["controller"],
    buckets=FAST_BUCKETS,
)

WEBHOOK_OUTCOMES = (
    "accepted",
    "unrouted",
    "duplicate",
    "handshake",
    "refused",
    "rate_limited",
    "unknown_source",
    "error",
)
WEBHOOK_DELIVERIES = Counter(
    "armillary_webhook_deliveries_total",
    "Webhook deliveries answered, by source and outcome (" + ", ".join(WEBHOOK_OUTCOMES) + ")",
    ["source", "outcome"],
)
INTAKE_BATCH_SIZE = Histogram(
    "armillary_intake_batch_size",
    "Deliveries written by one group-commit transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
INTAKE_COMMIT = Histogram(
    "armillary_intake_commit_duration_seconds",
    "Time one group-commit transaction of deliveries takes",
    buckets=FAST_BUCKETS,
)

AGENT_RUN_ATTEMPT = Histogram(
    "armillary_agent_run_attempt_duration_seconds",
    "Time one call to an agent takes, by outcome (succeeded, failed)",
    ["outcome"],
    buckets=SLOW_BUCKETS,
)
AGENT_RUNS_DEAD = Counter(
    "armillary_agent_runs_dead_lettered_total",
    "Agent runs that used their last attempt (or cannot run at all) and are dead",
)

PROVISIONING_RUNS = Counter(
    "armillary_provisioning_runs_finished_total",
    "Provisioning runs finished, by action and state (succeeded, failed)",
    ["action", "state"],
)
PROVISIONING_STEP = Histogram(
    "armillary_provisioning_step_duration_seconds",
    "Time one provisioning step takes, by step and outcome",
    ["step", "outcome"],
    buckets=SLOW_BUCKETS,
)

SCHEDULE_FIRES = Counter("armillary_schedule_fires_total", "Schedule runs started")
SCHEDULE_MISSES = Counter(
    "armillary_schedule_misses_total", "Fire times missed past their starting deadline"
)
SCHEDULE_SKIPS = Counter(
    "armillary_schedule_skips_total", "Fire times skipped (concurrency policy, suspended)"
)

DB_QUERY = Histogram(
    "armillary_db_query_duration_seconds",
    "Time one SQL statement takes, by pool (reader, writer, batch)",
    ["pool"],
    buckets=FAST_BUCKETS,
)


def status_class(status: int) -> str:
    """`2xx` for 204: a bounded label for any status."""
    return f"{status // 100}xx" if 100 <= status < 600 else "other"
