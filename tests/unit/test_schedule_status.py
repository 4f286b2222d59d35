"""schedule_status.build: the status document and its conditions, in words."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from armillary.control import firing, schedule_status
from armillary.store.schedule_runs import Run, State

NOW = dt.datetime(2026, 11, 22, 11, 0, 5, tzinfo=dt.UTC)
TIMING = firing.Timing(cron="0 * * * *", time_zone="Europe/Paris")
STATE = State(
    schedule="acme-nightly",
    tenant="acme",
    owner_uid="u",
    clock_hash=TIMING.clock_hash(),
    version=3,
    handled_at=NOW,
    last_scheduled_at=dt.datetime(2026, 11, 22, 11, tzinfo=dt.UTC),
    last_successful_at=None,
    status={},
    updated_at=NOW,
)


def run(hour: int, state: str, **extra: Any) -> Run:
    values: dict[str, Any] = {
        "id": f"r{hour}",
        "schedule": "acme-nightly",
        "tenant": "acme",
        "component": "report",
        "trigger": "schedule",
        "scheduled_at": dt.datetime(2026, 11, 22, hour, tzinfo=dt.UTC),
        "state": state,
        "created_at": NOW,
        **extra,
    }
    if state not in ("pending", "running"):
        values.setdefault("finished_at", NOW)
    return Run(**values)


def seen(**changes: Any) -> schedule_status.Seen:
    base = schedule_status.Seen(
        timing=TIMING,
        component="report",
        generation=2,
        blocked=None,
        state=STATE,
        runs=[],
        next_at=dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC),
        skipped=None,
    )
    return dataclasses.replace(base, **changes)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


@pytest.mark.parametrize(
    ("changes", "ready", "degraded"),
    [
        ({}, ("True", "Scheduled"), ("False", "None")),
        (
            {"blocked": ("NotAJob", "component 'web' is a service")},
            ("False", "NotAJob"),
            ("False", "None"),
        ),
        ({"timing": firing.Timing(cron="0 * * * *", suspend=True)}, ("False", "Suspended"), None),
        ({"next_at": None}, ("False", "NeverFires"), None),
        ({"runs": [run(10, "failed", exit_code=3)]}, None, ("True", "LastRunFailed")),
        (
            {"runs": [run(9, "failed", exit_code=3), run(10, "succeeded", exit_code=0)]},
            None,
            ("False", "None"),
        ),
        (
            {"runs": [run(11, "pending", reason="Unplaced", message="no nodes are registered")]},
            None,
            ("True", "RunUnplaced"),
        ),
    ],
)
def test_conditions_say_why(
    changes: dict[str, Any], ready: tuple[str, str] | None, degraded: tuple[str, str] | None
) -> None:
    found = conditions(schedule_status.build(seen(**changes), previous={}, now=NOW))
    if ready is not None:
        assert found["Ready"] == ready
    if degraded is not None:
        assert found["Degraded"] == degraded


def test_the_document_names_times_runs_and_the_last_outcome() -> None:
    runs = [
        run(10, "failed", exit_code=3, message="exited with code 3; 1 in a row"),
        run(11, "running", node="n1"),
    ]
    status = schedule_status.build(seen(runs=runs), previous={}, now=NOW)
    assert status["observedGeneration"] == 2
    assert status["lastScheduleTime"] == "2026-11-22T11:00:00Z"
    assert status["nextScheduleTime"] == "2026-11-22T12:00:00Z"
    assert "lastSuccessfulTime" not in status
    assert status["active"] == [
        {"run": "r11", "scheduledTime": "2026-11-22T11:00:00Z", "state": "running", "node": "n1"}
    ]
    assert status["lastRun"]["exitCode"] == 3
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "exit code 3" in degraded["message"] and "1 in a row" not in degraded["message"]


def test_a_suspended_or_blocked_schedule_shows_no_next_time() -> None:
    suspended = firing.Timing(cron="0 * * * *", suspend=True)
    assert "nextScheduleTime" not in schedule_status.build(
        seen(timing=suspended), previous={}, now=NOW
    )
    blocked = seen(blocked=("TenantNotFound", "tenant 'acme' does not exist"))
    assert "nextScheduleTime" not in schedule_status.build(blocked, previous={}, now=NOW)


def test_an_unchanged_condition_keeps_its_transition_time() -> None:
    first = schedule_status.build(seen(), previous={}, now=NOW)
    later = NOW + dt.timedelta(hours=1)
    again = schedule_status.build(seen(), previous=first, now=later)
    assert again == first
    failed = schedule_status.build(seen(runs=[run(10, "failed")]), previous=first, now=later)
    times = {c["type"]: c["lastTransitionTime"] for c in failed["conditions"]}
    assert times == {"Ready": "2026-11-22T11:00:05Z", "Degraded": "2026-11-22T12:00:05Z"}


def test_a_skipped_fire_time_says_why() -> None:
    timing = firing.Timing(cron="0 * * * *", starting_deadline_s=60)
    due = dt.datetime(2026, 11, 22, 11, tzinfo=dt.UTC)
    decision = firing.Decision(due=due, outcome="missed")
    skipped = schedule_status.skipped(decision, timing=timing, blocked=None)
    assert skipped["reason"] == "MissedDeadline" and "(60)" in skipped["message"]
    assert skipped["scheduledTime"] == "2026-11-22T11:00:00Z"
