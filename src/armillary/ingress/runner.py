"""The agent run worker: claims queued runs and calls the tenant's agent with each.

Started by the API server's lifespan (api/app.py), one per server process, and
cancelled at shutdown. It claims due runs from the shared queue (store/agent_runs.py)
within the global and per-tenant limits, and for each: re-reads the tenant, the event
and the tenant's replicas, picks a healthy replica of the run's component, mints a
tenant token for this run only, and sends

    POST http://<node address>:<port>/run
    Idempotency-Key: <run id>
    {"run", "tenant", "component", "attempt", "maxAttempts", "event", "input",
     "context": {"org", "labels", "api"}, "token", "tokenExpiresAt"}

A tenant on a Kubernetes cluster is called at its component's Service instead
(ingress/cluster_calls.py): by cluster DNS when the server runs inside that cluster,
through the API server's service proxy otherwise.

A 2xx answer is success; any other answer, a timeout, a transport error or no healthy
replica fails the attempt, retried with backoff (ingress/retry.py) until the run is
dead; a tenant that no longer exists kills the run at once. The answer's status,
body (the first `ANSWER_MAX_BYTES`, the run's token cut out: `redact`) and duration
are stored.

Invariants: nothing of the caller who queued a run is sent — no operator token, no
header of the request that created it; the agent gets a token of the run's tenant and
nothing wider. That token is never stored nor shown: where an agent echoes it in its
answer (which is stored, and which `runs show` prints), it is replaced by `REDACTED`.
A claim's lease is renewed while its call runs, so a live worker keeps it and a dead
one loses it. Delivery is at least once: a worker that dies after the
agent answered but before the answer was stored leaves the run to be tried again,
with the same Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import math
import os
import random
import socket
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from armillary import logs, metrics, timestamps
from armillary.auth import tenant_tokens
from armillary.auth.secrets import Vault
from armillary.errors import PermanentError, TemporaryError
from armillary.ingress import agent_http, cluster_calls, retry
from armillary.resources import naming
from armillary.runtime import nodes as nodes_runtime
from armillary.store import agent_runs, allocations, events, nodes, repository
from armillary.store.database import Database

log = logging.getLogger("armillary.runs")

ANSWER_MAX_BYTES = 64 * 1024
REDACTED = "[redacted: the run's token]"
MIN_REDACTED_PREFIX = 12  # a cut-off token at the end of a clipped answer, from this length
TOKEN_MARGIN_S = 60  # the run's token outlives the call by this much
RECORD_MAX = 512  # attempts recorded in one transaction, at most


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The worker's settings (from `ARMILLARY_AGENT_RUN_*`)."""

    limits: agent_runs.Limits
    backoff_s: float  # before the second attempt; doubles after each
    backoff_max_s: float
    timeout_s: float
    lease_s: float
    poll_s: float
    api_url: str  # where the agent reaches the API with its token


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where and with what one attempt calls."""

    url: str
    payload: dict[str, Any]
    token: str  # the tenant token minted for this attempt, in `payload` too
    via: str | None = None  # a cluster: `url` is a path on its API server (service proxy)


class Runner:
    """Claims and runs agent runs until cancelled (`run`)."""

    def __init__(
        self,
        db: Database,
        config: Config,
        *,
        token_key: bytes,
        vault: Vault | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._db = db
        self._config = config
        self._token_key = token_key
        self._clock = clock
        self._draw = draw
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        # Claimed and not yet recorded: counted against the limits, leases renewed.
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._answered: list[agent_runs.Outcome] = []  # waiting for the recorder
        self._claim_min = max(1, config.limits.total // 2)
        self._to_record = asyncio.Event()
        self._clusters = cluster_calls.Clusters(vault)

    async def run(self) -> None:
        """Claim, call and record until cancelled (in-flight calls are cancelled too;
        their claims lapse with their leases and are tried again)."""
        feed = self._db.feed.subscribe()
        # Kept-alive connections, up to one per call in flight: a connect per call
        # would cost a handshake (and a TIME_WAIT socket) per run.
        http = agent_http.Client(keep=self._config.limits.total)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._listen(feed))
                group.create_task(self._heartbeat())
                group.create_task(self._record_forever())
                await self._claim_forever(group, http)
        finally:
            self._db.feed.unsubscribe(feed)
            await http.aclose()
            await self._clusters.aclose()

    async def _listen(self, feed: asyncio.Queue[Any]) -> None:
        while True:
            event = await feed.get()
            if event.kind == "AgentRun":
                self._wake.set()

    async def _claim_forever(self, group: asyncio.TaskGroup, http: agent_http.Client) -> None:
        """Claim as many runs as there are free slots, in one transaction, and start
        their calls; again when the recorder frees slots, a run is queued, or every
        `poll_s` (runs queued by another replica, retries coming due)."""
        polled = True
        while True:
            self._wake.clear()
            free = self._config.limits.total - len(self._inflight)
            claimed: list[agent_runs.AgentRun] = []
            # A claim (and the read of its runs' targets) costs about the same whatever
            # it takes: under load, wait until half the slots are free, so that each
            # claims many runs.
            if free > 0 and (polled or not self._inflight or free >= self._claim_min):
                try:
                    claimed = await self._db.write_sync(
                        functools.partial(
                            agent_runs.claim,
                            worker=self.worker,
                            now=self._clock(),
                            lease_s=self._config.lease_s,
                            limits=self._config.limits,
                            most=free,
                        )
                    )
                except Exception:
                    log.exception("agent runs: claiming failed")
            if claimed:
                targets = await self._targets(claimed)
                for run in claimed:
                    call = self._attempt(run, http, targets[run.id])
                    self._inflight[run.id] = group.create_task(call)
            polled = False
            try:
                async with asyncio.timeout(self._config.poll_s):
                    await self._wake.wait()
            except TimeoutError:
                polled = True

    async def _heartbeat(self) -> None:
        """Renew the leases of the runs in flight, three times per lease."""
        while True:
            await asyncio.sleep(self._config.lease_s / 3)
            held = list(self._inflight)
            if not held:
                continue
            until = self._clock() + dt.timedelta(seconds=self._config.lease_s)
            try:
                async with self._db.write() as conn:
                    await agent_runs.renew(conn, worker=self.worker, ids=held, until=until)
            except Exception:
                log.exception("agent runs: renewing %d leases failed", len(held))

    async def _attempt(
        self, run: agent_runs.AgentRun, http: agent_http.Client, target: Target | Exception
    ) -> None:
        """One attempt of `run`, handed to the recorder; never raises (a loop boundary).
        The run stays in flight, its lease renewed, until the recorder wrote it."""
        # Every line logged about the run carries its ids (logs.py).
        with logs.bound(tenant=run.tenant, event_id=run.event_id, run_id=run.id):
            try:
                attempt, permanent = await self._outcome(run, http, target)
                verdict = retry.decide(
                    ok=attempt.error is None,
                    permanent=permanent,
                    attempts=run.attempts,
                    policy=retry.Policy(
                        max_attempts=run.max_attempts,  # fixed when the run was created
                        base_s=self._config.backoff_s,
                        max_s=self._config.backoff_max_s,
                    ),
                    now=self._clock(),
                    draw=self._draw(),
                )
            except Exception:
                log.exception("agent run %s: attempt %d failed", run.id, run.attempts)
                self._inflight.pop(run.id, None)  # its lease lapses: it is tried again
                self._wake.set()
                return
        self._answered.append(
            agent_runs.Outcome(
                run=run,
                attempt=attempt,
                state=verdict.state,
                next_attempt_at=verdict.next_attempt_at,
            )
        )
        self._to_record.set()

    async def _record_forever(self) -> None:
        """Record the attempts answered, many in one transaction: whatever arrived
        while the last one was written, and what arrives while the loop turns."""
        while True:
            await self._to_record.wait()
            seen = -1
            while len(self._answered) != seen and len(self._answered) < RECORD_MAX:
                seen = len(self._answered)
                await asyncio.sleep(0)  # let the calls answering right now join
            self._to_record.clear()
            batch, self._answered = self._answered, []
            try:
                kept = await self._db.write_sync(
                    functools.partial(
                        agent_runs.finish, outcomes=batch, worker=self.worker, now=self._clock()
                    )
                )
            except Exception:
                # Not recorded: the runs stay `running` until their leases lapse, then
                # they are tried again (at least once, with the same Idempotency-Key).
                log.exception("agent runs: recording %d attempts failed", len(batch))
                kept = None
            for outcome in batch:
                self._inflight.pop(outcome.run.id, None)
                if kept is not None:
                    _report(outcome, kept=outcome.run.id in kept)
            self._wake.set()  # slots are free

    async def _outcome(
        self, run: agent_runs.AgentRun, http: agent_http.Client, target: Target | Exception
    ) -> tuple[agent_runs.Attempt, bool]:
        """What calling the agent came to, and whether the failure is permanent."""
        started, began = self._clock(), time.monotonic()
        status: int | None = None
        answer: str | None = None
        error: str | None = None
        permanent = False
        try:
            if isinstance(target, Exception):
                raise target
            status, answer = await _post(
                http, self._clusters, target, run_id=run.id, timeout_s=self._timeout_s
            )
            answer = redact(answer, target.token)
            if not 200 <= status < 300:
                error = f"the agent answered {status}"
        except PermanentError as exc:
            error, permanent = str(exc), True
        except TemporaryError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"timed out after {self._timeout_s:g} s"
        except agent_http.CallError as exc:
            error = f"calling the agent failed: {exc}"
        duration_ms = int((time.monotonic() - began) * 1000)
        attempt = agent_runs.Attempt(
            started_at=started,
            status_code=status,
            answer=answer,
            duration_ms=duration_ms,
            error=error,
        )
        return attempt, permanent

    @property
    def _timeout_s(self) -> float:
        return self._config.timeout_s

    async def _targets(self, runs: list[agent_runs.AgentRun]) -> dict[str, Target | Exception]:
        """Re-read what the calls of `runs` need, in one read for them all: per run its
        `Target`, or `PermanentError` if the tenant is gone, `TemporaryError` if no
        replica of the component is up and healthy (or the store could not be read).
        For tenants on a cluster, their Services are read after the store's read, one
        request per (tenant, component), all at once (ingress/cluster_calls.py)."""
        try:
            async with self._db.read() as conn:
                tenants = await repository.get_many(conn, "Tenant", {r.tenant for r in runs})
                held = await allocations.for_tenants(conn, tenants)
                known = {n.name: n.address for n in await nodes.list_all(conn)}
                stored = await events.get_many(conn, {r.event_id for r in runs if r.event_id})
                services = _services(runs, tenants)
                clusters = {cluster for cluster, _, _ in services.values()}
                reaches = await self._clusters.reach(conn, clusters) if clusters else {}
        except Exception as exc:
            log.exception("agent runs: reading the targets of %d runs failed", len(runs))
            failed = TemporaryError(f"reading the run's tenant failed: {type(exc).__name__}")
            return {r.id: failed for r in runs}
        routes = (
            await self._clusters.routes(set(services.values()), reaches, path="run")
            if services
            else {}
        )
        found: dict[str, Target | Exception] = {}
        for run in runs:
            tenant = tenants.get(run.tenant)
            try:
                if tenant is None:
                    raise PermanentError(f"tenant {run.tenant!r} no longer exists")
                event = stored.get(run.event_id) if run.event_id else None
                service = services.get((run.tenant, run.component))
                route = routes.get(service) if service is not None else None
                found[run.id] = self._target(
                    run, tenant, held.get(run.tenant, []), known, event, route
                )
            except (PermanentError, TemporaryError) as exc:
                found[run.id] = exc
        return found

    def _target(
        self,
        run: agent_runs.AgentRun,
        tenant: repository.Stored,
        held: list[allocations.Allocation],
        known: Mapping[str, str],
        event: events.Event | None,
        route: cluster_calls.Route | Exception | None,
    ) -> Target:
        """Where `run` is sent and with what, from what `_targets` read: on nodes a
        healthy replica of the component (`TemporaryError` if none is up and healthy),
        on a cluster its Service (`route`, or why not)."""
        if isinstance(route, Exception):
            raise route
        url: str
        via: str | None
        if route is not None:
            url, via = route.url, route.via
        else:
            urls = sorted(
                replica
                for a in held
                if a.component == run.component and a.schedule_run is None and _serving(a)
                if (replica := nodes_runtime.url_of(a, known)) is not None
            )
            if not urls:
                raise TemporaryError(f"no healthy replica of {run.tenant}/{run.component}")
            # Spread runs over the replicas, and move a retry on to the next one.
            url = f"{urls[(zlib.crc32(run.id.encode()) + run.attempts) % len(urls)]}/run"
            via = None
        ttl_s = min(tenant_tokens.MAX_TTL_S, math.ceil(self._timeout_s) + TOKEN_MARGIN_S)
        token, claims = tenant_tokens.mint(
            key=self._token_key,
            tenant=run.tenant,
            tenant_uid=tenant.uid,
            now=self._clock(),
            ttl_s=ttl_s,
        )
        payload = {
            "run": run.id,
            "tenant": run.tenant,
            "component": run.component,
            "attempt": run.attempts,
            "maxAttempts": run.max_attempts,
            "event": _event_document(event) if event is not None else None,
            "input": run.input,
            "context": {
                "org": tenant.spec.get("org"),
                "labels": tenant.labels,
                "api": self._config.api_url,
            },
            "token": token,
            "tokenExpiresAt": timestamps.iso(claims.expires_at),
        }
        return Target(url=url, payload=payload, token=token, via=via)


def _services(
    runs: list[agent_runs.AgentRun], tenants: Mapping[str, repository.Stored]
) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(tenant, component) → (cluster, namespace, Service) of the runs whose tenant
    runs on a Kubernetes cluster (its status's `runtime`). Pure."""
    found: dict[tuple[str, str], tuple[str, str, str]] = {}
    for run in runs:
        tenant = tenants.get(run.tenant)
        if tenant is None:
            continue
        cluster = cluster_calls.cluster_of(str(tenant.status.get("runtime") or "nodes"))
        if cluster is not None:
            namespace = naming.namespace_name(run.tenant)
            found[(run.tenant, run.component)] = (cluster, namespace, run.component)
    return found


def _report(outcome: agent_runs.Outcome, *, kept: bool) -> None:
    """Metrics and log lines of a recorded attempt."""
    run, attempt = outcome.run, outcome.attempt
    with logs.bound(tenant=run.tenant, event_id=run.event_id, run_id=run.id):
        result = "succeeded" if attempt.error is None else "failed"
        metrics.AGENT_RUN_ATTEMPT.labels(result).observe(attempt.duration_ms / 1000)
        if kept and outcome.state == "dead":
            metrics.AGENT_RUNS_DEAD.inc()
        if not kept:
            log.warning("agent run %s: claim lost before its answer was stored", run.id)
        elif outcome.state != "succeeded":
            log.warning("agent run %s attempt %d: %s", run.id, run.attempts, attempt.error)


def redact(answer: str, token: str) -> str:
    """`answer` with every copy of `token` replaced by `REDACTED`, and the start of one
    cut off at the end (an answer is clipped at `ANSWER_MAX_BYTES`) as well. Pure."""
    if not token:
        return answer
    answer = answer.replace(token, REDACTED)
    for length in range(min(len(token), len(answer)), MIN_REDACTED_PREFIX - 1, -1):
        if answer.endswith(token[:length]):
            return answer[:-length] + REDACTED
    return answer


def _serving(allocation: allocations.Allocation) -> bool:
    """Running, and healthy or without a health check (healthy None)."""
    report = allocation.report or {}
    return report.get("state") == "running" and report.get("healthy") in (True, None)


async def _post(
    http: agent_http.Client,
    clusters: cluster_calls.Clusters,
    target: Target,
    *,
    run_id: str,
    timeout_s: float,
) -> tuple[int, str]:
    """POST the run; the status and the body's first `ANSWER_MAX_BYTES` as text.
    The whole exchange is bounded by `timeout_s`."""
    try:
        body = orjson.dumps(target.payload)
    except orjson.JSONEncodeError as exc:
        raise PermanentError(f"the run's payload is not JSON: {exc}") from exc
    headers = {"Idempotency-Key": run_id, "User-Agent": "armillary-agent-runs"}
    async with asyncio.timeout(timeout_s):
        if target.via is not None:
            route = cluster_calls.Route(url=target.url, via=target.via)
            answer = await clusters.post(route, body, headers=headers, max_bytes=ANSWER_MAX_BYTES)
        else:
            answer = await http.post(target.url, body, headers=headers, max_bytes=ANSWER_MAX_BYTES)
    return answer.status, answer.body.decode("utf-8", errors="replace")


def _event_document(event: events.Event) -> dict[str, Any]:
    """The stored event as the agent receives it; `json` is the body parsed, when it is
    JSON."""
    parsed: Any = None
    if event.body_encoding == "utf-8":
        with contextlib.suppress(ValueError):
            parsed = json.loads(event.body)
    return {
        "id": event.id,
        "source": event.source,
        "deliveryId": event.delivery_id,
        "receivedAt": timestamps.iso(event.received_at),
        "eventType": event.event_type,
        "routingKey": event.routing_key,
        "contentType": event.content_type,
        "headers": event.headers,
        "bodyEncoding": event.body_encoding,
        "body": event.body,
        "json": parsed,
    }
