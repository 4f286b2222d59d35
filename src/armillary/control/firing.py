"""What a schedule does now: pure, the clock passed in.

The schedule controller (control/schedules.py) reads a schedule's timing, the fire
time it handled last, its runs and the time, and calls `decide`; run-now calls
`decide_manual`. Kubernetes CronJob semantics are the model:

- **at most one run** is due, however many fire times passed since the last one
  handled (a server down for a day runs a missed hourly job once, not 24 times):
  the newest fire time that has passed;
- with `starting_deadline_s`, a fire time older than that when it is looked at is
  **missed**: it starts nothing;
- **concurrency**: `Forbid` skips a fire time while a run is active, `Allow` starts
  another, `Replace` stops the active ones and starts the new one;
- a fire time passing while the schedule is `suspend`ed, or while it cannot run (its
  tenant, stack or job is missing), is handled by starting nothing — it does not fire
  later, when the schedule can run again.

Every due fire time is *handled* exactly once, whatever the outcome: the caller
stores it as the new `handled_at` in the same transaction as the run it starts, so
a fire time can never start two runs. `history_limit` bounds the finished runs kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from armillary.control import cron

Policy = Literal["Forbid", "Allow", "Replace"]
Outcome = Literal["idle", "start", "forbidden", "missed", "suspended", "unrunnable"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """When a schedule fires and how its runs may overlap (the spec, minus what runs)."""

    cron: str
    time_zone: str = "UTC"
    concurrency_policy: Policy = "Forbid"
    starting_deadline_s: int | None = None
    history_limit: int = 10
    suspend: bool = False

    def clock_hash(self) -> str:
        """What decides which instants are fire times: the cron and the time zone."""
        return hashlib.sha256(f"{self.cron}\n{self.time_zone}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """What a decision needs to know about one run."""

    id: str
    scheduled_at: dt.datetime
    finished_at: dt.datetime | None  # None while it is active

    @property
    def active(self) -> bool:
        return self.finished_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    due: dt.datetime | None  # the fire time handled now (None: nothing passed since the last)
    outcome: Outcome
    stop: tuple[str, ...] = ()  # active runs to stop before starting (Replace)
    next_at: dt.datetime | None = None  # the first fire time after now; None: never again
    prune: tuple[str, ...] = ()  # finished runs beyond history_limit, to delete

    @property
    def start(self) -> bool:
        return self.outcome == "start"


def decide(
    timing: Timing,
    *,
    handled_at: dt.datetime,
    runs: Sequence[Run],
    now: dt.datetime,
    runnable: bool = True,
) -> Decision:
    """The fire time due at `now` (if any), what to do about it, and what comes next.

    `handled_at` is the last fire time handled, or the moment the schedule began to
    count (fire times at or before it are never due)."""
    next_at = cron.following(timing.cron, timing.time_zone, now)
    prune = history_overflow(runs, limit=timing.history_limit)
    newest = cron.latest(timing.cron, timing.time_zone, now)
    if newest is None or newest <= handled_at:
        return Decision(due=None, outcome="idle", next_at=next_at, prune=prune)
    active = tuple(r.id for r in runs if r.active)
    outcome: Outcome = "start"
    if timing.suspend:
        outcome = "suspended"
    elif not runnable:
        outcome = "unrunnable"
    elif (
        timing.starting_deadline_s is not None
        and (now - newest).total_seconds() > timing.starting_deadline_s
    ):
        outcome = "missed"
    elif active and timing.concurrency_policy == "Forbid":
        outcome = "forbidden"
    stop = active if outcome == "start" and timing.concurrency_policy == "Replace" else ()
    return Decision(due=newest, outcome=outcome, stop=stop, next_at=next_at, prune=prune)


def decide_manual(timing: Timing, *, runs: Sequence[Run]) -> Decision:
    """A run asked for now (`run-now`): the concurrency policy applies as at a fire
    time; suspension and the deadline do not. `forbidden` means refuse it."""
    active = tuple(r.id for r in runs if r.active)
    if active and timing.concurrency_policy == "Forbid":
        return Decision(due=None, outcome="forbidden")
    stop = active if timing.concurrency_policy == "Replace" else ()
    return Decision(due=None, outcome="start", stop=stop)


def history_overflow(runs: Sequence[Run], *, limit: int) -> tuple[str, ...]:
    """Finished runs beyond the newest `limit` (by fire time), oldest last."""
    finished = sorted(
        (r for r in runs if not r.active), key=lambda r: (r.scheduled_at, r.id), reverse=True
    )
    return tuple(r.id for r in finished[limit:])


def counting_from(
    *,
    handled_at: dt.datetime | None,
    seen_hash: str | None,
    timing: Timing,
    first_seen: dt.datetime,
    now: dt.datetime,
) -> dt.datetime:
    """Where a schedule counts fire times from. The first time it is seen: `first_seen`
    (when it was created). After a change of its cron or time zone: from `now`, so the
    new cron's past fire times do not fire late. Otherwise: the last fire time handled."""
    if handled_at is None:
        return first_seen
    if seen_hash != timing.clock_hash():
        return max(handled_at, now)
    return handled_at


def gives_up_waiting(timing: Timing, run: Run, *, now: dt.datetime) -> bool:
    """A run that found no node gives up once its fire time is older than the starting
    deadline; without a deadline it waits for a node as long as it takes."""
    deadline_s = timing.starting_deadline_s
    return deadline_s is not None and (now - run.scheduled_at).total_seconds() > deadline_s
