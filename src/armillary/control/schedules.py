"""The schedule controller: fires schedules, runs each run as an allocation, records it.

Keys are schedules as `control.schedule_targets` names them: a Schedule resource's
name, or `<tenant>/<name>` for a tenant's inline schedule. The driver brings a key
here on a change of the schedule, its tenant, a stack or a release, a report of one
of its runs' allocations, a node joining (for runs waiting for one), at the next fire
time this returns, and at every resync.

`reconcile(key)` works in one write transaction: it re-reads the schedule and the
job it runs, settles the runs under way (a run whose node reports `succeeded` or
`failed` is recorded and its allocation removed), asks `firing.decide` what is due,
starts or stops runs, prunes the history, and writes the firing state — conditional
on the version it read — and the status. Starting a run records it (unique per fire
time), places its allocation (`NodesRuntime.place_run`) and moves `handled_at` in
that same transaction, so a fire time starts at most one run, across crashes,
restarts and a concurrent `run-now`. A deleted schedule or tenant has its runs
stopped and removed.

A tenant on a Kubernetes cluster (its `spec.runtime`, or its Org's) has its schedules
run by the CronJobs the kubernetes runtime applies: here their fire times are handled
without a run (none is placed on nodes), and their status — the next fire time —
stays this controller's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from armillary import metrics, timestamps
from armillary.control import (
    conditions,
    cron,
    firing,
    runtimes,
    schedule_status,
    schedule_targets,
)
from armillary.control.driver import Result
from armillary.errors import Conflict, NotFound
from armillary.resources import naming
from armillary.resources.tenant import Org, Tenant
from armillary.runtime import nodes as nodes_runtime
from armillary.runtime.instance import Template
from armillary.store import allocations, repository, schedule_runs
from armillary.store.database import Database, Tx
from armillary.store.feed import Change

log = logging.getLogger("armillary.schedules")

UNPLACED_RECHECK_S = 5.0  # a run waiting for a node is retried at least this often
RUN_NOW_ATTEMPTS = 5  # run-now re-reads and retries this often when it races a writer


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Opened:
    """A schedule as read at the start of a transaction, its runs settled."""

    target: schedule_targets.Target
    job: schedule_targets.Job
    stored: schedule_runs.State  # the firing state as the store holds it
    state: schedule_runs.State  # the same, counting from where it counts now
    runs: list[schedule_runs.Run]
    cluster: str | None = None  # `kubernetes/<cluster>`: its CronJob runs the schedule


class ScheduleController:
    name = "schedules"

    def __init__(
        self,
        db: Database,
        runtime: nodes_runtime.NodesRuntime,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._db = db
        self._runtime = runtime
        self._clock = clock

    # --- keys ---------------------------------------------------------------------------

    async def keys_for(self, event: Change) -> set[str]:
        if event.kind == "Schedule":
            return {event.name}
        if event.kind in ("Stack", "Release"):
            return await self.all_keys()
        if event.kind not in ("Tenant", "Allocation", "Node"):
            return set()  # agent runs, secrets, …: no read for what cannot matter
        if event.kind == "Allocation" and event.run is None:
            return set()  # a tenant's replica, not a run's: no read per report
        async with self._db.read() as conn:
            if event.kind == "Tenant":
                return await schedule_targets.keys_of_tenant(conn, event.name)
            if event.kind == "Allocation":
                run = await schedule_runs.by_allocation(conn, event.name)
                return {run.schedule} if run is not None else set()
            if event.kind == "Node":
                return await schedule_runs.waiting_for_a_node(conn)
        return set()

    async def all_keys(self) -> set[str]:
        async with self._db.read() as conn:
            keys = {s.name for s in await repository.list_kind(conn, "Schedule")}
            for stored in await repository.list_kind(conn, "Tenant"):
                items = schedule_targets.inline_items(stored)
                keys |= {schedule_targets.inline_key(stored.name, str(s["name"])) for s in items}
            keys |= {s.schedule for s in await schedule_runs.list_states(conn)}
        return keys

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result:
        now = self._clock()
        async with self._db.write() as conn:
            opened = await self._open(conn, key, now=now)
            if opened is None:
                return Result()
            target, job, state, runs = opened.target, opened.job, opened.state, opened.runs
            decision = firing.decide(
                target.timing,
                handled_at=state.handled_at,
                runs=[_as_firing(r) for r in runs],
                now=now,
                runnable=job.template is not None,
            )
            skipped = state.status.get("lastSkipped")
            if decision.due is not None:
                state = dataclasses.replace(state, handled_at=decision.due)
                if decision.start and opened.cluster is not None:
                    log.debug("schedule %s: run by its CronJob on %s", key, opened.cluster)
                elif decision.start:
                    state, runs = await self._fire(conn, opened, state, decision, now=now)
                else:
                    skipped = schedule_status.skipped(
                        decision, timing=target.timing, blocked=job.message or None
                    )
                    log.info("schedule %s: %s", key, skipped["message"])
            await schedule_runs.delete_runs(conn, decision.prune)
            runs = [r for r in runs if r.id not in decision.prune]
            seen = _seen(opened, state, runs, next_at=decision.next_at, skipped=skipped)
            await self._write(conn, opened, state, seen, now=now)
        if decision.due is not None:  # counted once committed
            _count(decision)
        return Result(requeue_after_s=_requeue_after(decision, runs, now=now))

    async def _open(self, conn: Tx, key: str, *, now: dt.datetime) -> Opened | None:
        """Read the schedule, set up or reset its firing state, settle its runs. None:
        the schedule is gone (its runs are stopped and removed, its state deleted)."""
        target = await schedule_targets.resolve(conn, key)
        state = await schedule_runs.get_state(conn, key)
        if target is None or (state is not None and state.owner_uid != target.owner_uid):
            await _forget(conn, key)
            if target is None:
                return None
            state = None
        if state is None:
            state = await schedule_runs.create_state(conn, _first_state(target, now=now))
        counting = dataclasses.replace(
            state,
            handled_at=firing.counting_from(
                handled_at=state.handled_at,
                seen_hash=state.clock_hash,
                timing=target.timing,
                first_seen=state.handled_at,
                now=now,
            ),
            clock_hash=target.timing.clock_hash(),
        )
        cluster = await _cluster(conn, target.tenant)
        job = await schedule_targets.resolve_job(conn, target, on_cluster=cluster is not None)
        runs = await schedule_runs.runs_of(conn, key)
        if job.reason == "TenantNotFound":  # a deleted tenant's runs stop and go
            await _drop(conn, runs)
            runs = []
        opened = Opened(
            target=target, job=job, stored=state, state=counting, runs=runs, cluster=cluster
        )
        return await self._settle(conn, opened, now=now)

    async def _settle(self, conn: Tx, opened: Opened, *, now: dt.datetime) -> Opened:
        """Record the outcome of runs whose node says they ended; place runs waiting
        for a node (or give up on them past the starting deadline)."""
        state, settled = opened.state, []
        for run in opened.runs:
            if run.active and run.allocation_id is not None:
                run = await _collect(conn, run, now=now)
                if run.state == "succeeded":
                    state = dataclasses.replace(state, last_successful_at=run.finished_at)
            elif run.active:
                if firing.gives_up_waiting(opened.target.timing, _as_firing(run), now=now):
                    run = _finish(run, "failed", now=now, reason="Unplaced", message=run.message)
                    await schedule_runs.save_run(conn, run)
                elif opened.job.template is not None:
                    run = await self._place(conn, opened.target, opened.job.template, run, now)
            settled.append(run)
        return dataclasses.replace(opened, state=state, runs=settled)

    async def _fire(
        self,
        conn: Tx,
        opened: Opened,
        state: schedule_runs.State,
        decision: firing.Decision,
        *,
        now: dt.datetime,
        trigger: str = "schedule",
    ) -> tuple[schedule_runs.State, list[schedule_runs.Run]]:
        """Stop what the decision stops, then record and place the new run."""
        target, template = opened.target, opened.job.template
        assert template is not None
        scheduled_at = decision.due or now
        runs = []
        for run in opened.runs:
            if run.id in decision.stop:
                run = await _stop(
                    conn, run, now=now, why=f"replaced by the run for {_iso(scheduled_at)}"
                )
            runs.append(run)
        run = schedule_runs.Run(
            id=str(uuid.uuid4()),
            schedule=target.key,
            tenant=target.tenant,
            component=target.component,
            trigger=trigger,
            scheduled_at=scheduled_at,
            state="pending",
            created_at=now,
        )
        await schedule_runs.add_run(conn, run)
        run = await self._place(conn, target, template, run, now)
        log.info(
            "schedule %s: run %s for %s: %s", target.key, run.id, _iso(scheduled_at), run.state
        )
        if trigger == "schedule":  # a run asked for by hand is not the schedule firing
            state = dataclasses.replace(state, last_scheduled_at=scheduled_at)
        return state, [*runs, run]

    async def _place(
        self,
        conn: Tx,
        target: schedule_targets.Target,
        template: Template,
        run: schedule_runs.Run,
        now: dt.datetime,
    ) -> schedule_runs.Run:
        placed = await self._runtime.place_run(
            conn,
            run=run.id,
            tenant=target.tenant,
            template=template,
            name=_run_name(template.component, target.tenant, run.scheduled_at),
            env={
                "ARMILLARY_SCHEDULE": target.key,
                "ARMILLARY_SCHEDULED_TIME": _iso(run.scheduled_at),
                "ARMILLARY_RUN": run.id,
            },
            now=now,
        )
        if isinstance(placed, str):
            run = dataclasses.replace(run, reason="Unplaced", message=placed)
        else:
            run = dataclasses.replace(
                run,
                state="running",
                allocation_id=placed.id,
                node=placed.node,
                started_at=now,
                reason=None,
                message=None,
            )
        return await schedule_runs.save_run(conn, run)

    async def _write(
        self,
        conn: Tx,
        opened: Opened,
        state: schedule_runs.State,
        seen: schedule_status.Seen,
        *,
        now: dt.datetime,
    ) -> None:
        """Save the firing state, if it changed, conditional on the version read (a fire
        time handled, a run started or ended all change it), and the status."""
        status = schedule_status.build(seen, previous=state.status, now=now)
        state = dataclasses.replace(state, status=status)
        if state != opened.stored:
            await schedule_runs.save_state(conn, state, now=now)
        target = opened.target
        if target.resource is not None and target.resource.status != status:
            await repository.write_status(
                conn,
                kind="Schedule",
                name=target.key,
                status=status,
                expected_version=None,
                now=now,
            )

    async def give_up(self, key: str, reason: str) -> None:
        """Say in the schedule's status that its reconcile failed for good, and why."""
        now = self._clock()
        async with self._db.write() as conn:
            state = await schedule_runs.get_state(conn, key)
            if state is not None:
                status = conditions.failed_for_good(state.status, reason, now)
                await schedule_runs.save_state(
                    conn, dataclasses.replace(state, status=status), now=now
                )
            target = await schedule_targets.resolve(conn, key)
            if target is not None and target.resource is not None:
                await repository.write_status(
                    conn,
                    kind="Schedule",
                    name=target.key,
                    status=conditions.failed_for_good(target.resource.status, reason, now),
                    expected_version=None,
                    now=now,
                )

    # --- run now ------------------------------------------------------------------------

    async def run_now(self, key: str) -> schedule_runs.Run:
        """Start a run of `key` now. The concurrency policy applies; suspension and
        the starting deadline do not. `NotFound`, or `Conflict` saying why it cannot."""
        for attempt in range(1, RUN_NOW_ATTEMPTS + 1):
            try:
                outcome = await self._run_now_once(key)
            except Conflict:  # another writer moved the schedule's state: read again
                if attempt == RUN_NOW_ATTEMPTS:
                    raise
                continue
            if isinstance(outcome, Conflict):
                raise outcome
            return outcome
        raise AssertionError("unreachable")

    async def _run_now_once(self, key: str) -> schedule_runs.Run | Conflict:
        now = self._clock()
        async with self._db.write() as conn:
            opened = await self._open(conn, key, now=now)
            if opened is None:
                raise NotFound(f"schedule {key!r} not found")
            if opened.job.template is None:
                return Conflict(f"schedule {key!r} cannot run now: {opened.job.message}")
            if opened.cluster is not None:
                return Conflict(
                    f"schedule {key!r} cannot run now: its tenant runs on {opened.cluster}, "
                    "where its CronJob runs it; run-now there is not built (kubectl create "
                    "job --from=cronjob/NAME starts one)"
                )
            timing = opened.target.timing
            decision = firing.decide_manual(timing, runs=[_as_firing(r) for r in opened.runs])
            if not decision.start:
                return Conflict(
                    f"schedule {key!r} has a run under way and its concurrency_policy is "
                    "Forbid; wait for it to end (armillary schedule runs), or use Replace"
                )
            state, runs = await self._fire(
                conn, opened, opened.state, decision, now=now, trigger="manual"
            )
            seen = _seen(
                opened,
                state,
                runs,
                next_at=cron.following(timing.cron, timing.time_zone, now),
                skipped=state.status.get("lastSkipped"),
            )
            await self._write(conn, opened, state, seen, now=now)
        return runs[-1]


# --- runs ------------------------------------------------------------------------------


async def _collect(conn: Tx, run: schedule_runs.Run, *, now: dt.datetime) -> schedule_runs.Run:
    """A placed run: record its outcome once its node reports one, and remove its
    allocation then; otherwise leave it running."""
    assert run.allocation_id is not None
    allocation = await allocations.get(conn, run.allocation_id)
    if allocation is None:
        run = _finish(
            run,
            "failed",
            now=now,
            reason="AllocationLost",
            message="its allocation was removed before its node reported an outcome",
        )
        return await schedule_runs.save_run(conn, run)
    report = allocation.report or {}
    if report.get("state") not in ("succeeded", "failed"):
        return run
    run = _finish(
        run,
        str(report["state"]),
        now=timestamps.utc(allocation.reported_at) if allocation.reported_at else now,
        exit_code=report.get("exit_code"),
        reason=report.get("reason"),
        message=report.get("message"),
    )
    await allocations.remove(conn, [allocation])
    return await schedule_runs.save_run(conn, run)


async def _stop(
    conn: Tx, run: schedule_runs.Run, *, now: dt.datetime, why: str
) -> schedule_runs.Run:
    """Stop an active run: its node stops the process (SIGTERM, then SIGKILL)."""
    if run.allocation_id is not None:
        allocation = await allocations.get(conn, run.allocation_id)
        if allocation is not None:
            await allocations.remove(conn, [allocation])
    return await schedule_runs.save_run(
        conn, _finish(run, "stopped", now=now, reason="Replaced", message=why)
    )


async def _drop(conn: Tx, runs: list[schedule_runs.Run]) -> None:
    """Stop every active run and delete every run."""
    for run in runs:
        if run.active and run.allocation_id is not None:
            allocation = await allocations.get(conn, run.allocation_id)
            if allocation is not None:
                await allocations.remove(conn, [allocation])
    await schedule_runs.delete_runs(conn, [r.id for r in runs])


async def _forget(conn: Tx, key: str) -> None:
    """A schedule that is gone: stop and delete its runs, delete its state."""
    await _drop(conn, await schedule_runs.runs_of(conn, key))
    await schedule_runs.delete_state(conn, key)


def _finish(
    run: schedule_runs.Run,
    state: str,
    *,
    now: dt.datetime,
    exit_code: int | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> schedule_runs.Run:
    return dataclasses.replace(
        run,
        state=state,
        finished_at=now,
        exit_code=exit_code,
        reason=reason,
        message=message[:4000] if message else None,
    )


# --- small pure parts ------------------------------------------------------------------


def _first_state(target: schedule_targets.Target, *, now: dt.datetime) -> schedule_runs.State:
    """A schedule seen for the first time counts fire times from its creation (a
    Schedule's `createdAt`) or, for an inline schedule, from now."""
    return schedule_runs.State(
        schedule=target.key,
        tenant=target.tenant,
        owner_uid=target.owner_uid,
        clock_hash=target.timing.clock_hash(),
        version=0,
        handled_at=timestamps.utc(target.created_at) if target.created_at else now,
        last_scheduled_at=None,
        last_successful_at=None,
        status={},
        updated_at=now,
    )


async def _cluster(conn: Tx, tenant: str) -> str | None:
    """The runtime (`kubernetes/<cluster>`) a tenant on a cluster asks for; None on
    nodes (or when the tenant is gone)."""
    row = await repository.get(conn, "Tenant", tenant)
    if row is None:
        return None
    document = Tenant.model_validate(row.document())
    org_row = await repository.get(conn, "Org", document.spec.org)
    org = Org.model_validate(org_row.document()) if org_row is not None else None
    wanted = runtimes.wanted(document, org)
    return wanted if wanted.startswith(runtimes.PREFIX) else None


def _seen(
    opened: Opened,
    state: schedule_runs.State,
    runs: list[schedule_runs.Run],
    *,
    next_at: dt.datetime | None,
    skipped: object,
) -> schedule_status.Seen:
    resource = opened.target.resource
    return schedule_status.Seen(
        timing=opened.target.timing,
        component=opened.target.component,
        generation=resource.generation if resource is not None else None,
        blocked=opened.job.blocked,
        state=state,
        runs=runs,
        next_at=next_at,
        skipped=skipped if isinstance(skipped, dict) else None,
    )


def _as_firing(run: schedule_runs.Run) -> firing.Run:
    return firing.Run(
        id=run.id,
        scheduled_at=run.scheduled_at,
        finished_at=None if run.active else (run.finished_at or run.scheduled_at),
    )


def _requeue_after(
    decision: firing.Decision, runs: list[schedule_runs.Run], *, now: dt.datetime
) -> float | None:
    delays = []
    if decision.next_at is not None:
        delays.append(max(0.0, (decision.next_at - now).total_seconds()))
    if any(r.active and r.allocation_id is None for r in runs):
        delays.append(UNPLACED_RECHECK_S)
    return min(delays) if delays else None


def _run_name(component: str, tenant: str, scheduled_at: dt.datetime) -> str:
    """`<component>-<tenant hash>-<minutes since the epoch of the fire time>`, as
    Kubernetes names a CronJob's Jobs: one name per fire time."""
    return f"{naming.instance_name(component, tenant)}-{int(scheduled_at.timestamp()) // 60}"


def _iso(moment: dt.datetime) -> str:
    return timestamps.iso(moment)


def _count(decision: firing.Decision) -> None:
    """A fire time handled: started, missed past its deadline, or skipped."""
    if decision.start:
        metrics.SCHEDULE_FIRES.inc()
    elif decision.outcome == "missed":
        metrics.SCHEDULE_MISSES.inc()
    else:
        metrics.SCHEDULE_SKIPS.inc()
