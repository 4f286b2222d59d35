"""Provisioning runs: a tenant onboarded (or removed) as a recorded sequence of steps.

`Provisioner.submit` validates a request, records the run with every step pending,
and starts it. A run takes the tenant's lock (so two runs for one tenant never
interleave, while runs for different tenants proceed in parallel), then runs its
steps in order, recording each one's start, end, outcome and what it changed. When a
step fails, the steps before it are undone in reverse order — each undoes only what
it recorded doing — and the run ends `rolled-back` with the reason. At server start,
`recover` rolls back runs a crash interrupted and starts runs still pending, so no
run stays "running" forever. Steps are idempotent: a step whose effect is already
there changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from armillary import logs, metrics
from armillary.auth import tokens
from armillary.auth.sealing import Sealer
from armillary.control import apply as applying
from armillary.control import conditions
from armillary.errors import ArmillaryError, Conflict, Gone, Invalid, Issue, PermanentError
from armillary.store import allocations, feed, locks, provisioning_runs, repository, users
from armillary.store.database import Database

log = logging.getLogger("armillary.provisioning")

PROVISION_STEPS = [
    "ensure-org",
    "ensure-tenant",
    "write-routing",
    "issue-tenant-token",
    "deploy-and-wait-healthy",
    "run-seed-jobs",
    "create-schedules",
    "verify",
]
DEPROVISION_STEPS = ["delete-schedules", "delete-tenant", "wait-stopped", "revoke-tokens"]
SEALED = "_sealed"
"""The step detail key holding the issued key, sealed, until it is collected once; it
never leaves the server (run documents drop `_` keys)."""
POLL_FALLBACK_S = 5.0
"""Waiting steps wake on the change feed; they look again after this long without word
anyway (a change the feed did not carry, such as one written by another server)."""
DEFAULT_TIMEOUT_S = 300.0


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StepFailed(PermanentError):
    """A step cannot complete; the run rolls back."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    run: provisioning_runs.Run
    deadline: float  # loop time by which waiting steps give up


Do = Callable[[Context], Awaitable[dict[str, Any]]]
Undo = Callable[[Context, dict[str, Any]], Awaitable[None]]


class Provisioner:
    def __init__(
        self,
        db: Database,
        *,
        sealer: Sealer,
        clock: Callable[[], dt.datetime] = _utc_now,
        poll_s: float = POLL_FALLBACK_S,
    ) -> None:
        self._db = db
        self._sealer = sealer
        self._clock = clock
        self._poll_s = poll_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._steps: dict[str, tuple[Do, Undo]] = {
            "ensure-org": (self._ensure_org, self._undo_org),
            "ensure-tenant": (self._ensure_tenant, self._undo_tenant),
            "write-routing": (self._write_routing, self._undo_routing),
            "issue-tenant-token": (self._issue_token, self._undo_token),
            "deploy-and-wait-healthy": (self._deploy, _nothing),
            "run-seed-jobs": (self._seed_jobs, _nothing),
            "create-schedules": (self._create_schedules, self._undo_schedules),
            "verify": (self._verify, _nothing),
            "delete-schedules": (self._delete_schedules, self._undo_deleted_schedules),
            "delete-tenant": (self._delete_tenant, self._undo_deleted_tenant),
            "wait-stopped": (self._wait_stopped, _nothing),
            "revoke-tokens": (self._revoke_tokens, _nothing),
        }

    # --- entry points ------------------------------------------------------------------

    async def submit(
        self, request: dict[str, Any], *, action: str, idempotency_key: str | None
    ) -> tuple[provisioning_runs.Run, bool]:
        """Validate and record a run, start it, and return it (True if new)."""
        if action == "provision":
            await self._validate(request)
        org = str(request.get("org", ""))
        tenant = str(request["tenant"])
        run, created = await provisioning_runs.create(
            self._db,
            run_id=str(uuid.uuid4()),
            action=action,
            org=org,
            tenant=tenant,
            idempotency_key=idempotency_key,
            request=request,
            steps=PROVISION_STEPS if action == "provision" else DEPROVISION_STEPS,
            now=self._clock(),
        )
        if created:
            self._start(run.id)
        elif (run.action, run.request) != (action, request):
            raise Conflict(
                f"idempotency key {idempotency_key!r} was used for a different request "
                f"(run {run.id}); use a new key for a new request"
            )
        return run, created

    async def recover(self) -> None:
        """At start, and on the leader at each term: roll back runs a crash interrupted;
        start runs still pending. Each waits for its tenant's lock first: a run another
        live replica is executing holds it, and is found ended once it is free."""
        for run in await provisioning_runs.list_runs(self._db, states={"running", "pending"}):
            self._start(run.id, interrupted=run.state == "running")

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _start(self, run_id: str, *, interrupted: bool = False) -> None:
        task = asyncio.create_task(
            self._execute(run_id, interrupted=interrupted), name=f"run {run_id}"
        )
        self._tasks[run_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(run_id, None))

    # --- running -----------------------------------------------------------------------

    async def _execute(self, run_id: str, *, interrupted: bool) -> None:
        run = await provisioning_runs.get(self._db, run_id)
        with logs.bound(tenant=run.tenant, run_id=run_id):  # on every line the run logs
            await self._execute_locked(run_id, tenant=run.tenant, interrupted=interrupted)

    async def _execute_locked(self, run_id: str, *, tenant: str, interrupted: bool) -> None:
        # Tenant names are unique across orgs, so the tenant's name is the lock's.
        async with locks.hold(self._db, f"tenant:{tenant}", owner=run_id):
            run = await provisioning_runs.get(self._db, run_id)
            if run.state not in ("pending", "running"):
                return  # another server replica ran it while this one waited for the lock
            if interrupted or run.state == "running":  # whoever ran it is gone: the lock is ours
                await self._roll_back(run, failed_at=None, error="interrupted by a server restart")
                return
            await provisioning_runs.set_run(
                self._db, run_id, state="running", started_at=self._clock()
            )
            timeout_s = float(run.request.get("timeout_s") or DEFAULT_TIMEOUT_S)
            context = Context(run=run, deadline=asyncio.get_running_loop().time() + timeout_s)
            for step in run.steps:
                do, _ = self._steps[step.name]
                await provisioning_runs.set_step(
                    self._db,
                    run_id,
                    step.position,
                    state="running",
                    started_at=self._clock(),
                    error=None,
                )
                began = time.perf_counter()
                step_time = metrics.PROVISIONING_STEP.labels
                try:
                    detail = await do(context)
                except asyncio.CancelledError:
                    raise  # the server is stopping: `recover` rolls the run back at next start
                except Exception as exc:
                    error = (
                        str(exc)
                        if isinstance(exc, ArmillaryError)
                        else f"{type(exc).__name__}: {exc}"
                    )
                    step_time(step.name, "failed").observe(time.perf_counter() - began)
                    if not isinstance(exc, ArmillaryError):
                        log.exception("run %s: step %s failed", run_id, step.name)
                    await provisioning_runs.set_step(
                        self._db,
                        run_id,
                        step.position,
                        state="failed",
                        finished_at=self._clock(),
                        error=error[:4000],
                    )
                    await self._roll_back(
                        await provisioning_runs.get(self._db, run_id),
                        failed_at=step.position,
                        error=f"step {step.name} failed: {error}",
                    )
                    return
                step_time(step.name, "succeeded").observe(time.perf_counter() - began)
                await provisioning_runs.set_step(
                    self._db,
                    run_id,
                    step.position,
                    state="succeeded",
                    finished_at=self._clock(),
                    detail=detail,
                )
            await provisioning_runs.set_run(
                self._db, run_id, state="succeeded", finished_at=self._clock()
            )
            metrics.PROVISIONING_RUNS.labels(run.action, "succeeded").inc()
            log.info("%s of tenant %s succeeded", run.action, tenant)

    async def _roll_back(
        self, run: provisioning_runs.Run, *, failed_at: int | None, error: str
    ) -> None:
        """Undo, newest first, every step that took effect (or may have, if interrupted)."""
        context = Context(run=run, deadline=asyncio.get_running_loop().time() + DEFAULT_TIMEOUT_S)
        undone: list[str] = []
        stuck: list[str] = []
        for step in reversed(run.steps):
            if step.position == failed_at or step.state not in ("succeeded", "running"):
                continue
            if step.finished_at is None:  # interrupted mid-step: it ended when the server died
                await provisioning_runs.set_step(
                    self._db, run.id, step.position, finished_at=self._clock()
                )
            _, undo = self._steps[step.name]
            try:
                await undo(context, step.detail)
            except Exception as exc:  # keep undoing the rest; say what could not be undone
                log.exception("run %s: undo of %s failed", run.id, step.name)
                await provisioning_runs.set_step(
                    self._db,
                    run.id,
                    step.position,
                    state="failed",
                    error=f"undo failed: {exc}"[:4000],
                )
                stuck.append(step.name)
                continue
            undone.append(step.name)
            await provisioning_runs.set_step(self._db, run.id, step.position, state="rolled-back")
        for step in run.steps:
            if step.state == "pending":
                await provisioning_runs.set_step(self._db, run.id, step.position, state="skipped")
        summary = f"{error}; undone: {', '.join(undone) or 'nothing'}"
        if stuck:  # the rollback itself is incomplete: say so, and say what is left
            summary += f"; NOT undone: {', '.join(stuck)}"
        state = "failed" if stuck else "rolled-back"
        await provisioning_runs.set_run(
            self._db, run.id, state=state, error=summary[:4000], finished_at=self._clock()
        )
        metrics.PROVISIONING_RUNS.labels(run.action, state).inc()
        log.warning("%s of tenant %s %s: %s", run.action, run.tenant, state, summary)

    # --- validation --------------------------------------------------------------------

    async def _validate(self, request: dict[str, Any]) -> None:
        unnamed = [
            Issue(path=f"schedules[{i}].name", message="required field is missing")
            for i, schedule in enumerate(request.get("schedules", []))
            if not isinstance(schedule, dict) or not schedule.get("name")
        ]
        if unnamed:
            raise Invalid(unnamed)
        documents = [_org_document(request), _tenant_document(request, routing=True)]
        documents += [_schedule_document(request, s) for s in request.get("schedules", [])]
        try:
            applying.parse_documents(documents)
        except Invalid as exc:
            places = ["org", "tenant", *(f"schedules[{i}]" for i in range(len(documents) - 2))]
            raise Invalid(
                [
                    Issue(path=f"{places[i.document or 0]}.{i.path}".rstrip("."), message=i.message)
                    for i in exc.issues
                ]
            ) from None
        async with self._db.read() as conn:
            if await repository.get(conn, "Stack", str(request["stack"])) is None:
                raise Invalid(
                    [Issue(path="stack", message=f"stack {request['stack']!r} does not exist")]
                )

    # --- provision steps ---------------------------------------------------------------

    async def _apply(self, *documents: dict[str, Any]) -> None:
        await applying.apply(
            self._db, applying.parse_documents(list(documents)), prune=False, now=self._clock()
        )

    async def _get(self, kind: str, name: str) -> repository.Stored | None:
        async with self._db.read() as conn:
            return await repository.get(conn, kind, name)

    async def _delete(self, kind: str, name: str) -> None:
        async with self._db.write() as conn:
            if await repository.get(conn, kind, name) is not None:
                await repository.remove(conn, kind, name)

    async def _ensure_org(self, context: Context) -> dict[str, Any]:
        if await self._get("Org", context.run.org) is not None:
            return {"created": False}
        try:
            await self._apply(_org_document(context.run.request))
        except Conflict:
            # A run for another tenant of the same org created it a moment ago: it exists,
            # which is all this step ensures, and it is not ours to undo.
            if await self._get("Org", context.run.org) is None:
                raise
            return {"created": False}
        return {"created": True}

    async def _undo_org(self, context: Context, detail: dict[str, Any]) -> None:
        if not detail.get("created"):
            return
        async with self._db.read() as conn:
            users = [
                t
                for t in await repository.list_kind(conn, "Tenant")
                if t.spec.get("org") == context.run.org
            ]
        if not users:  # created by this run and still nobody's: remove it
            await self._delete("Org", context.run.org)

    async def _ensure_tenant(self, context: Context) -> dict[str, Any]:
        previous = await self._get("Tenant", context.run.tenant)
        document = _tenant_document(context.run.request, routing=False)
        if previous is not None:  # keep the routing it has until write-routing
            document["spec"]["routing"] = previous.spec.get("routing", {})
        await self._apply(document)
        return {"previous": _plain(previous)}

    async def _undo_tenant(self, context: Context, detail: dict[str, Any]) -> None:
        previous = detail.get("previous")
        if previous is None:
            await self._delete("Tenant", context.run.tenant)
        else:
            await self._apply(previous)

    async def _write_routing(self, context: Context) -> dict[str, Any]:
        current = await self._get("Tenant", context.run.tenant)
        if current is None:
            raise StepFailed(f"tenant {context.run.tenant!r} disappeared")
        await self._apply(_tenant_document(context.run.request, routing=True))
        return {"previous_routing": current.spec.get("routing", {})}

    async def _undo_routing(self, context: Context, detail: dict[str, Any]) -> None:
        current = await self._get("Tenant", context.run.tenant)
        if current is not None:
            document = _plain(current) or {}
            document["spec"]["routing"] = detail.get("previous_routing", {})
            await self._apply(document)

    async def _issue_token(self, context: Context) -> dict[str, Any]:
        """A key that acts as the tenant, kept sealed until collected once. A key this
        run issued before (a step re-run after a restart) is revoked first."""
        description = _token_description(context.run.id)
        tenant = await self._get("Tenant", context.run.tenant)
        if tenant is None:
            raise StepFailed(f"tenant {context.run.tenant!r} disappeared")
        async with self._db.write() as conn:
            await tokens.revoke_for_tenant(
                conn, context.run.tenant, now=self._clock(), description=description
            )
            minted = await tokens.create_for_tenant(
                conn,
                tenant=context.run.tenant,
                tenant_uid=tenant.uid,  # a tenant created again later is another tenant
                description=description,
                now=self._clock(),
            )
        return {"token_id": minted.token_id, SEALED: self._sealer.seal(minted.token)}

    async def _undo_token(self, context: Context, _detail: dict[str, Any]) -> None:
        # By the run's mark, not the detail: a key minted just before a crash is found too.
        async with self._db.write() as conn:
            await tokens.revoke_for_tenant(
                conn,
                context.run.tenant,
                now=self._clock(),
                description=_token_description(context.run.id),
            )

    async def _revoke_tokens(self, context: Context) -> dict[str, Any]:
        """Last, once everything else is gone: no key or token of the tenant works."""
        async with self._db.write() as conn:
            revoked = await tokens.revoke_for_tenant(conn, context.run.tenant, now=self._clock())
            await users.revoke_tenant_tokens(conn, context.run.tenant, now=self._clock())
        return {"revoked_keys": revoked}

    async def collect_token(self, run_id: str) -> dict[str, str]:
        """The key a provisioning run issued, once: it is erased from the store as it is
        handed over. Later calls say it was collected (issue a new one with
        `armillary token tenant`, or a new provisioning run)."""
        run = await provisioning_runs.get(self._db, run_id)
        step = next((s for s in run.steps if s.name == "issue-tenant-token"), None)
        if step is None or step.state != "succeeded":
            raise Conflict(f"run {run_id} has issued no tenant key (its state is {run.state})")
        sealed = await provisioning_runs.take_from_detail(self._db, run_id, step.position, SEALED)
        if not sealed:
            raise Gone(f"the tenant key of run {run_id} was already collected")
        return {
            "tenant": run.tenant,
            "id": str(step.detail["token_id"]),
            "token": self._sealer.open(str(sealed)),
        }

    async def _deploy(self, context: Context) -> dict[str, Any]:
        """Wait until the tenant is Ready; fail at once if a job failed for good. Looks
        again when the feed says the tenant or one of its replicas changed (its status
        written, a report), or after `poll_s` if no word came."""
        with self._watching() as changes:
            while True:
                tenant = await self._get("Tenant", context.run.tenant)
                status = tenant.status if tenant else {}
                if conditions.is_true(status, "Ready") and status.get("observedGeneration") == (
                    tenant.generation if tenant else None
                ):
                    return {"replicas": status.get("replicas", {})}
                failed = await self._failed_jobs(context.run.tenant)
                if failed:
                    raise StepFailed("; ".join(failed))
                if asyncio.get_running_loop().time() > context.deadline:
                    message = conditions.message(status, "Ready") or "no status yet"
                    raise StepFailed(f"not healthy in time: {message}")
                await self._next_change(changes, context)

    @contextlib.contextmanager
    def _watching(self) -> Iterator[asyncio.Queue[feed.Change]]:
        """The feed, statuses included, from before the first look (so no change is
        missed between a look and the wait that follows it)."""
        changes = self._db.feed.subscribe(status=True)
        try:
            yield changes
        finally:
            self._db.feed.unsubscribe(changes)

    async def _next_change(self, changes: asyncio.Queue[feed.Change], context: Context) -> None:
        """Until something of the run's tenant changes, `poll_s` passes, or the deadline."""
        tenant = context.run.tenant
        wait_s = min(self._poll_s, context.deadline - asyncio.get_running_loop().time())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, wait_s)):
                while True:
                    event = await changes.get()
                    if event.tenant == tenant or (event.kind == "Tenant" and event.name == tenant):
                        return

    async def _failed_jobs(self, tenant: str) -> list[str]:
        async with self._db.read() as conn:
            held = await allocations.for_tenant(conn, tenant)
        failed = []
        for a in held:
            report = a.report or {}
            if a.schedule_run is not None:  # a schedule's run, not the stack's job
                continue
            if a.spec.get("type") == "job" and report.get("state") == "failed":
                code, message = report.get("exit_code"), report.get("message") or ""
                failed.append(f"job {a.component} failed (exit code {code}) {message}".strip())
        return failed

    async def _seed_jobs(self, context: Context) -> dict[str, Any]:
        async with self._db.read() as conn:
            held = await allocations.for_tenant(conn, context.run.tenant)
        jobs = {
            a.component: a.report or {}
            for a in held
            if a.spec.get("type") == "job" and a.schedule_run is None  # not a schedule's run
        }
        unfinished = [name for name, report in jobs.items() if report.get("state") != "succeeded"]
        if unfinished:
            raise StepFailed(f"job(s) not succeeded: {', '.join(sorted(unfinished))}")
        return {
            "jobs": {name: {"exit_code": r.get("exit_code")} for name, r in sorted(jobs.items())}
        }

    async def _create_schedules(self, context: Context) -> dict[str, Any]:
        created, previous = [], {}
        for schedule in context.run.request.get("schedules", []):
            document = _schedule_document(context.run.request, schedule)
            name = document["metadata"]["name"]
            existing = await self._get("Schedule", name)
            if existing is None:
                created.append(name)
            else:
                previous[name] = _plain(existing)
            await self._apply(document)
        return {"created": created, "previous": previous}

    async def _undo_schedules(self, _context: Context, detail: dict[str, Any]) -> None:
        for name in detail.get("created", []):
            await self._delete("Schedule", name)
        for document in detail.get("previous", {}).values():
            await self._apply(document)

    async def _verify(self, context: Context) -> dict[str, Any]:
        tenant = await self._get("Tenant", context.run.tenant)
        if tenant is None or not conditions.is_true(tenant.status, "Ready"):
            raise StepFailed(f"tenant {context.run.tenant!r} is not Ready")
        async with self._db.read() as conn:
            held = await allocations.for_tenant(conn, context.run.tenant)
        unhealthy = [
            a.spec.get("name")
            for a in held
            if a.spec.get("type") == "service"
            and (
                (a.report or {}).get("state") != "running"
                or (a.report or {}).get("healthy") is False
            )
        ]
        if unhealthy:
            raise StepFailed(f"replicas not healthy: {', '.join(map(str, unhealthy))}")
        return {"replicas": tenant.status.get("replicas", {})}

    # --- deprovision steps -------------------------------------------------------------

    async def _delete_schedules(self, context: Context) -> dict[str, Any]:
        async with self._db.read() as conn:
            mine = [
                s
                for s in await repository.list_kind(conn, "Schedule")
                if s.spec.get("tenant") == context.run.tenant
            ]
        for schedule in mine:
            await self._delete("Schedule", schedule.name)
        return {"deleted": [_plain(s) for s in mine]}

    async def _undo_deleted_schedules(self, _context: Context, detail: dict[str, Any]) -> None:
        for document in detail.get("deleted", []):
            await self._apply(document)

    async def _delete_tenant(self, context: Context) -> dict[str, Any]:
        current = await self._get("Tenant", context.run.tenant)
        await self._delete("Tenant", context.run.tenant)
        return {"previous": _plain(current)}

    async def _undo_deleted_tenant(self, _context: Context, detail: dict[str, Any]) -> None:
        if detail.get("previous"):
            await self._apply(detail["previous"])

    async def _wait_stopped(self, context: Context) -> dict[str, Any]:
        with self._watching() as changes:
            while True:
                async with self._db.read() as conn:
                    left = await allocations.for_tenant(conn, context.run.tenant)
                if not left:
                    return {"stopped": True}
                if asyncio.get_running_loop().time() > context.deadline:
                    raise StepFailed(f"{len(left)} replica(s) still allocated")
                await self._next_change(changes, context)


def _token_description(run_id: str) -> str:
    return f"issued by provisioning run {run_id}"


async def _nothing(_context: Context, _detail: dict[str, Any]) -> None:
    """Waiting and checking change nothing, so there is nothing to undo."""


def _org_document(request: dict[str, Any]) -> dict[str, Any]:
    spec = {"display_name": request["org_display_name"]} if request.get("org_display_name") else {}
    return {
        "apiVersion": "armillary.dev/v1",
        "kind": "Org",
        "metadata": {"name": request.get("org")},
        "spec": spec,
    }


def _tenant_document(request: dict[str, Any], *, routing: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"org": request.get("org"), "stack": request.get("stack")}
    for key in ("display_name", "env", "overrides"):
        if request.get(key):
            spec[key] = request[key]
    if routing and request.get("routing"):
        spec["routing"] = request["routing"]
    metadata: dict[str, Any] = {"name": request.get("tenant")}
    if request.get("labels"):
        metadata["labels"] = request["labels"]
    return {"apiVersion": "armillary.dev/v1", "kind": "Tenant", "metadata": metadata, "spec": spec}


def _schedule_document(request: dict[str, Any], schedule: dict[str, Any]) -> dict[str, Any]:
    spec = {k: v for k, v in schedule.items() if k != "name"}
    spec["tenant"] = request.get("tenant")
    return {
        "apiVersion": "armillary.dev/v1",
        "kind": "Schedule",
        "metadata": {"name": f"{request.get('tenant')}-{schedule.get('name')}"},
        "spec": spec,
    }


def _plain(stored: repository.Stored | None) -> dict[str, Any] | None:
    """A stored resource as a document that applies cleanly again (no server fields)."""
    if stored is None:
        return None
    metadata: dict[str, Any] = {"name": stored.name}
    if stored.labels:
        metadata["labels"] = stored.labels
    if stored.annotations:
        metadata["annotations"] = stored.annotations
    return {
        "apiVersion": "armillary.dev/v1",
        "kind": stored.kind,
        "metadata": metadata,
        "spec": dict(stored.spec),
    }
