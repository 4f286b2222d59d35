"""`create_app(settings)`: the FastAPI application and its lifespan.

At start the lifespan opens the store (migrating it), creates the admin token if
none exists (printing it once and saving it to the local context file), and records
the server's URL for the local CLI. Routers are mounted under /api/v1; `/api/<rest>`
redirects to `/api/v1/<rest>` (see `VersionRedirect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from armillary import __version__, metrics
from armillary.api import audit as audit_log
from armillary.api import (
    context,
    gate,
    headers,
    limits,
    measure,
    openapi,
    presence,
    problems,
    ratelimit,
    security,
)
from armillary.api.hub import Hub
from armillary.api.leadership import Leadership, LeaderTask
from armillary.api.live.hub import LiveHub
from armillary.api.routes import (
    access,
    agent_runs,
    apply,
    audit,
    dashboard,
    doctor,
    events,
    health,
    live,
    nodes,
    provision,
    replicas,
    resources,
    rollouts,
    schedules,
    servers,
    version,
    webhooks,
)
from armillary.api.routes import docs as api_docs
from armillary.api.routes import (
    metrics as metrics_route,
)
from armillary.api.routes import (
    retention as retention_routes,
)
from armillary.api.routes import secrets as secret_routes
from armillary.auth import keys, secrets, tokens
from armillary.auth.sealing import Sealer
from armillary.config import Settings
from armillary.control import drains, retention
from armillary.control.driver import Driver
from armillary.control.node_loss import NodeLoss
from armillary.control.provisioning import Provisioner
from armillary.control.runtimes import Runtimes
from armillary.control.schedules import ScheduleController
from armillary.control.tenants import TenantController
from armillary.errors import PermanentError
from armillary.ingress import catalog, intake, runner
from armillary.runtime.nodes import NodesRuntime
from armillary.store import agent_runs as agent_runs_store
from armillary.store import exclusive, listen
from armillary.store import nodes as nodes_store
from armillary.store.database import Database
from armillary.store.leader import Election

log = logging.getLogger("armillary.api")


def create_app(settings: Settings) -> FastAPI:
    """The API server for `settings`; the store opens when the app starts."""
    metrics.enabled = settings.metrics  # before the store opens: its query timing

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ring = keys.load(
            value=settings.secret_key,
            previous=settings.secret_key_previous,
            home=settings.home,
            production=settings.mode == "production",
        )
        if ring.generated is not None:
            _tell(  # loud on purpose: a dev key on disk next to the database
                settings,
                logging.WARNING,
                f"no ARMILLARY_SECRET_KEY; created {ring.generated} for "
                "this dev server. Set ARMILLARY_SECRET_KEY (and ARMILLARY_MODE=production) "
                "for real use; without that file, secrets and tenant tokens cannot be read",
            )
        app.state.keys = ring
        app.state.settings = settings
        claim = _claim(settings)  # one server per SQLite file: before anything opens it
        db = await Database.open(settings.resolved_database_url())
        name = settings.replica_name()
        shared = db.dialect == "postgresql"
        if shared:
            # The other replicas hear this one's writes (LISTEN/NOTIFY); an id of this
            # process, so two replicas given one name by mistake still hear each other.
            db.sender = f"{name}/{uuid.uuid4().hex[:12]}"
        try:  # a wrong key stops the start here, before anything is served
            app.state.vault = await secrets.unlock(db, ring, now=dt.datetime.now(dt.UTC))
        except PermanentError as exc:
            _tell(settings, logging.ERROR, str(exc))
            await db.close()
            raise
        async with db.write() as conn:
            minted = await tokens.bootstrap_admin(conn, now=dt.datetime.now(dt.UTC))
            # No node is connected to this replica yet; the sessions of others are theirs.
            await nodes_store.disconnect_all(conn, server=name if shared else None)
        path = context.write(
            settings.home, url=settings.public_url(), token=minted.token if minted else None
        )
        if minted is not None and settings.log_format == "json":
            # A JSON log is shipped and kept: the token stays in the 0600 file alone.
            log.warning("admin token created; saved to %s (it is not logged)", path)
        elif minted is not None:
            # Printed once, on purpose: this is the only time the plain token exists
            # outside the 0600 context file.
            _tell(
                settings,
                logging.INFO,
                f"admin token (shown once; saved to {path}):\n  {minted.token}",
            )
        app.state.db = db
        app.state.hub = Hub(
            db,
            vault=app.state.vault,
            heartbeat_interval_s=settings.node_heartbeat_s,
            server=name if shared else None,
        )
        # Live channels (/api/v1/ws): fed by this replica's feed, the others' writes too.
        app.state.live = LiveHub(
            db, history=settings.ws_history, heartbeat_s=settings.node_heartbeat_s
        )
        app.state.live.start()
        tasks: list[asyncio.Task[None]] = []
        if shared:  # the others' writes, into this replica's feed, before serving
            listener = listen.Listener(db)
            tasks.append(asyncio.create_task(listener.run(), name="listener"))
            await asyncio.wait_for(listener.ready.wait(), timeout=30)
        runtime = NodesRuntime(db)
        app.state.schedules = ScheduleController(db, runtime)
        tasks.append(asyncio.create_task(app.state.hub.record_heartbeats(), name="heartbeats"))
        app.state.retention = retention.Retention(
            db,
            retention.policies(settings),
            interval_s=settings.audit_cleanup_interval_s,
            batch=settings.retention_batch,
        )
        app.state.provisioner = Provisioner(db, sealer=Sealer(ring, purpose="provisioning-tokens"))
        background: dict[str, asyncio.Task[None]] = {}
        app.state.leadership = Leadership(
            Election(db),
            _leader_tasks(app, db, runtime, settings),
            background=background,
            on_change=lambda _leading: app.state.presence.poke(),
        )
        app.state.presence = presence.Presence(
            db,
            name=name,
            address=settings.public_url(),
            version=__version__,
            leading=lambda: bool(app.state.leadership.leader),
        )
        app.state.catalog = catalog.Catalog(
            db, app.state.vault, max_age_s=settings.webhook_catalog_max_age_s
        )
        app.state.intake = intake.Intake(db)
        app.state.intake.start()
        app.state.runner = _runner(
            db, settings, token_key=ring.derive("tenant-tokens"), vault=app.state.vault
        )
        if settings.agent_run_worker:
            tasks.append(asyncio.create_task(app.state.runner.run(), name="agent-runs"))
        await app.state.leadership.start()  # the first replica leads before it serves
        await app.state.presence.announce()
        tasks.append(asyncio.create_task(app.state.leadership.run(), name="leadership"))
        tasks.append(asyncio.create_task(app.state.presence.run(), name="presence"))
        background.update({task.get_name(): task for task in tasks})
        app.state.background = background  # what runs here (leader tasks come and go)
        # Everything made while starting (the app, its routes and models, SQLAlchemy's
        # metadata: most of the heap) lives as long as the process: out of the cyclic
        # collector's sight, so its full collections stop pausing the event loop. And
        # a young collection every 50,000 allocations, not 700: a request makes
        # hundreds, nearly all freed by reference counting (measured: ~10% more
        # webhook deliveries per CPU second, docs/performance.md).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        try:
            yield
        finally:
            await app.state.live.close()
            await app.state.provisioner.close()
            await app.state.intake.drain()  # every delivery taken in is written
            app.state.catalog.close()
            for task in tasks:  # leadership first: the lead is handed over at once
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await app.state.leadership.stop()
            with contextlib.suppress(Exception):  # gone from `servers` (a crash leaves it stale)
                await app.state.presence.remove()
            await db.close()
            if claim is not None:
                claim.close()

    app = FastAPI(
        title="Armillary",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served by routes/docs.py, with its assets from the package
        redoc_url=None,
    )
    app.add_middleware(limits.BodyLimit, max_bytes=settings.max_body_bytes, public=security.PUBLIC)
    # Before the body limit and every route: who calls is known before a body is read.
    app.add_middleware(gate.Gate)
    # Inside the rate limit (a flood of 429s writes nothing), outside the gate (a 401
    # is recorded like any refusal).
    app.add_middleware(audit_log.AuditLog)
    app.add_middleware(
        ratelimit.RateLimit, rate_per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst
    )
    if settings.cors_origins:  # CORS only for origins the operator named
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-CSRF-Token", "X-Request-ID"],
        )
    app.add_middleware(headers.SecurityHeaders)
    problems.install(app)
    app.add_exception_handler(405, _method_not_allowed)
    openapi.install(app)
    # Matched in this order, and matching walks the routes: the hottest paths first.
    app.include_router(webhooks.router)
    app.include_router(health.router)
    app.include_router(resources.router)
    app.include_router(apply.router)
    app.include_router(nodes.router)
    app.include_router(live.router)
    app.include_router(replicas.router)
    app.include_router(provision.router)
    app.include_router(rollouts.router)
    app.include_router(access.router)
    app.include_router(schedules.router)
    app.include_router(audit.router)
    app.include_router(secret_routes.router)
    app.include_router(events.router)
    app.include_router(agent_runs.router)
    app.include_router(doctor.router)
    app.include_router(retention_routes.router)
    app.include_router(version.router)
    app.include_router(servers.router)
    app.include_router(metrics_route.router)
    app.include_router(api_docs.router)
    app.include_router(dashboard.router)
    app.state.webhook_limits = webhooks.Limits()

    app.add_middleware(VersionRedirect)
    app.add_middleware(audit_log.RequestId)  # outermost: every response carries the id
    if settings.log_format == "text":
        audit_log.log_request_ids()
    return app


_TEXT_PREFIXES = {logging.WARNING: "WARNING: ", logging.ERROR: "error: "}


def _tell(settings: Settings, level: int, message: str) -> None:
    """Something whoever starts the server must see: a line on stderr in the text
    format (shown whatever the log level), a log record in the JSON one, so that
    every line of the server's output is JSON."""
    if settings.log_format == "json":
        log.log(level, "%s", message)
    else:
        print(f"armillary: {_TEXT_PREFIXES.get(level, '')}{message}", file=sys.stderr, flush=True)


def create_server(settings: Settings) -> ASGIApp:
    """What the server runs: `create_app(settings)` behind the webhook front door,
    which answers deliveries before FastAPI's own per-request layers (see
    `webhooks.Front`); everything else goes through to the app. Around both, the
    bounds every body is read within: the bytes all requests in flight hold, and the
    time one body may take (`limits.BodyGuard`); around everything, unless metrics are
    off, the count and duration of every request (`measure.Measure`)."""
    front = webhooks.Front(create_app(settings), max_body_bytes=settings.max_body_bytes)
    budget = limits.Budget(max_bytes=settings.body_budget_bytes())
    guarded = limits.BodyGuard(front, budget=budget, timeout_s=settings.body_timeout_s)
    return measure.Measure(guarded) if settings.metrics else guarded


async def _tenants(db: Database, runtimes: Runtimes) -> None:
    """The tenant controller for one term: the clusters' watches end with it."""
    try:
        await Driver(TenantController(db, runtimes), db.feed).run()
    finally:
        await runtimes.close()


def _leader_tasks(
    app: FastAPI, db: Database, runtime: NodesRuntime, settings: Settings
) -> list[LeaderTask]:
    """What only the leader runs, each term afresh: the controllers (each behind its
    driver), the node-loss check, the drain loop and the retention loop. Loops added
    later go here too."""
    tasks = [
        LeaderTask(
            name="tenants",
            make=lambda: _tenants(db, Runtimes(db, runtime, vault=app.state.vault)),
        ),
        LeaderTask(name="schedules", make=lambda: Driver(app.state.schedules, db.feed).run()),
        LeaderTask(name=drains.Drains.name, make=lambda: drains.Drains(db).run()),
        # Afresh each term: a new leader gives every node its start grace again, as the
        # daemons of a replica that died are reconnecting to the others meanwhile.
        LeaderTask(
            name=NodeLoss.name,
            make=lambda: NodeLoss(db, lost_after_s=settings.node_lost_after_s).run(),
        ),
    ]
    if settings.retention_enabled:
        tasks.append(LeaderTask(name="retention", make=app.state.retention.run))
    # Runs a dead replica was executing: rolled back by the next leader (it waits for
    # each run's tenant lock, which a live executor holds).
    tasks.append(LeaderTask(name="provisioning-recovery", make=app.state.provisioner.recover))
    return tasks


def _claim(settings: Settings) -> IO[str] | None:
    """Hold the SQLite file for this process, or say who does and stop."""
    try:
        return exclusive.claim(settings.resolved_database_url())
    except PermanentError as exc:
        _tell(settings, logging.ERROR, str(exc))
        raise


def _runner(
    db: Database, settings: Settings, *, token_key: bytes, vault: secrets.Vault | None
) -> runner.Runner:
    """The agent run worker of this server, configured from `ARMILLARY_AGENT_RUN_*`."""
    config = runner.Config(
        limits=agent_runs_store.Limits(
            total=settings.agent_run_concurrency, per_tenant=settings.agent_run_tenant_concurrency
        ),
        backoff_s=settings.agent_run_backoff_s,
        backoff_max_s=settings.agent_run_backoff_max_s,
        timeout_s=settings.agent_run_timeout_s,
        lease_s=settings.agent_run_lease_s,
        poll_s=settings.agent_run_poll_s,
        api_url=settings.public_url(),
    )
    return runner.Runner(db, config, token_key=token_key, vault=vault)


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    """405 with every method the path answers in `Allow`: Starlette names only those
    of the first route whose path matched, and each method is a route of its own."""
    allowed: set[str] = set()
    for route in openapi.routes(request.app.routes):
        if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
            allowed |= route.methods or set()
    detail = f"{request.method} is not allowed here"
    allow = ", ".join(sorted(allowed))
    return problems.problem(405, "Method not allowed", detail, headers={"Allow": allow})


class VersionRedirect:
    """`/api/<rest>` → `/api/v1/<rest>`: 301 for reads, 308 (method and body kept) for
    writes. A middleware rather than a catch-all route, so that routing under /api/v1
    keeps its own 404 and 405 answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/api/") and not _versioned(path):
            target = "/api/v1/" + path.removeprefix("/api/")
            query = scope.get("query_string", b"").decode("latin-1")
            if query:
                target += f"?{query}"
            status = 301 if scope["method"] in ("GET", "HEAD") else 308
            await RedirectResponse(target, status_code=status)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _versioned(path: str) -> bool:
    return path == "/api/v1" or path.startswith("/api/v1/")
