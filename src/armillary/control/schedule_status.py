"""A schedule's `status`, as the schedule controller writes it: pure.

`build` turns what the controller saw — the firing state, the runs, the next fire
time, whether the job can run and why not — into the status document shown by
`get schedule -o yaml`, `armillary schedules` and the API:

    lastScheduleTime, lastSuccessfulTime, nextScheduleTime, active, lastRun,
    lastSkipped, conditions (Ready, Degraded)

A condition whose status did not change keeps its `lastTransitionTime`, so a status
that says the same thing is the same document and is not written again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from armillary import timestamps
from armillary.control import conditions, firing
from armillary.store import schedule_runs

SKIP_REASONS: dict[firing.Outcome, str] = {
    "missed": "MissedDeadline",
    "forbidden": "RunActive",
    "suspended": "Suspended",
    "unrunnable": "CannotRun",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """Everything the status says, as the controller found it."""

    timing: firing.Timing
    component: str
    generation: int | None  # the Schedule's; None for a tenant's inline schedule
    blocked: tuple[str, str] | None  # (reason, message) when the job cannot run now
    state: schedule_runs.State
    runs: Sequence[schedule_runs.Run]
    next_at: dt.datetime | None
    skipped: dict[str, Any] | None  # the last fire time that started nothing, and why


def skipped(
    decision: firing.Decision, *, timing: firing.Timing, blocked: str | None
) -> dict[str, Any]:
    """`lastSkipped` for a fire time that started no run."""
    assert decision.due is not None
    messages = {
        "missed": f"older than starting_deadline_s ({timing.starting_deadline_s}) when looked at",
        "forbidden": "a run was still active (concurrency_policy Forbid)",
        "suspended": "the schedule was suspended",
        "unrunnable": blocked or "the job could not run",
    }
    return {
        "scheduledTime": timestamps.iso(decision.due),
        "reason": SKIP_REASONS[decision.outcome],
        "message": messages[decision.outcome],
    }


def build(seen: Seen, *, previous: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    state = seen.state
    active = [r for r in seen.runs if r.active]
    finished = [r for r in seen.runs if not r.active]
    firing_next = seen.blocked is None and not seen.timing.suspend
    status: dict[str, Any] = {
        "observedGeneration": seen.generation,
        "lastScheduleTime": timestamps.iso_or_none(state.last_scheduled_at),
        "lastSuccessfulTime": timestamps.iso_or_none(state.last_successful_at),
        "nextScheduleTime": timestamps.iso_or_none(seen.next_at) if firing_next else None,
        "active": [_active(r) for r in active],
        "lastRun": _finished(max(finished, key=lambda r: r.scheduled_at)) if finished else None,
        "lastSkipped": seen.skipped,
        "conditions": [_ready(seen, now), _degraded(active, finished, now)],
    }
    status = {k: v for k, v in status.items() if v is not None}
    return conditions.keep_transition_times(previous, status)


def _active(run: schedule_runs.Run) -> dict[str, Any]:
    entry = {
        "run": run.id,
        "scheduledTime": timestamps.iso(run.scheduled_at),
        "state": run.state,
        "node": run.node,
        "message": run.message,
    }
    return {k: v for k, v in entry.items() if v is not None}


def _finished(run: schedule_runs.Run) -> dict[str, Any]:
    entry = {
        "run": run.id,
        "scheduledTime": timestamps.iso(run.scheduled_at),
        "state": run.state,
        "exitCode": run.exit_code,
        "finishedAt": timestamps.iso_or_none(run.finished_at),
    }
    return {k: v for k, v in entry.items() if v is not None}


def _ready(seen: Seen, now: dt.datetime) -> dict[str, str]:
    timing = seen.timing
    if seen.blocked is not None:
        reason, message = seen.blocked
        return conditions.make("Ready", False, reason, message, now)
    if timing.suspend:
        return conditions.make(
            "Ready", False, "Suspended", "suspended: fire times pass without a run", now
        )
    if seen.next_at is None:
        message = f"cron {timing.cron!r} names no time that is still to come"
        return conditions.make("Ready", False, "NeverFires", message, now)
    message = f"runs {seen.component} on {timing.cron!r} ({timing.time_zone})"
    return conditions.make("Ready", True, "Scheduled", message, now)


def _degraded(
    active: Sequence[schedule_runs.Run], finished: Sequence[schedule_runs.Run], now: dt.datetime
) -> dict[str, str]:
    waiting = [r for r in active if r.allocation_id is None and r.message]
    if waiting:
        message = f"run for {timestamps.iso(waiting[0].scheduled_at)} waits: {waiting[0].message}"
        return conditions.make("Degraded", True, "RunUnplaced", message, now)
    last = max(finished, key=lambda r: r.scheduled_at) if finished else None
    if last is not None and last.state == "failed":
        cause = last.reason or "failed"
        detail = (last.message or "").split("; ", 1)[0]  # the cause, not the retry counts
        message = (
            f"run for {timestamps.iso(last.scheduled_at)} failed "
            f"(exit code {last.exit_code}, {cause}{': ' + detail if detail else ''})"
        )
        return conditions.make("Degraded", True, "LastRunFailed", message, now)
    return conditions.make("Degraded", False, "None", "no problems", now)
