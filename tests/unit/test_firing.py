"""firing.decide and friends: which fire time is due, what the concurrency policy
does, the starting deadline, history — and, over simulated downtimes, that a fire
time never starts two runs and missed ones start at most one."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armillary.control import cron, firing
from armillary.control.firing import Run, Timing

T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def active(run_id: str, minutes: float = 0) -> Run:
    return Run(id=run_id, scheduled_at=at(minutes), finished_at=None)


def done(run_id: str, minutes: float) -> Run:
    return Run(id=run_id, scheduled_at=at(minutes), finished_at=at(minutes + 1))


HOURLY = Timing(cron="0 * * * *")

# name: (timing, handled_at, runs, now, runnable) → (due, outcome, stop)
CASES: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {
    "nothing-passed": ((HOURLY, at(0), [], at(59), True), (None, "idle", ())),
    "exactly-at-the-fire-time": ((HOURLY, at(0), [], at(60), True), (at(60), "start", ())),
    "one-missed-no-deadline": ((HOURLY, at(0), [], at(61), True), (at(60), "start", ())),
    "a-day-down-starts-the-newest-once": (
        (HOURLY, at(0), [], at(24 * 60 + 30), True),
        (at(24 * 60), "start", ()),
    ),
    "within-the-deadline": (
        (Timing(cron="0 * * * *", starting_deadline_s=300), at(0), [], at(65), True),
        (at(60), "start", ()),
    ),
    "past-the-deadline": (
        (Timing(cron="0 * * * *", starting_deadline_s=300), at(0), [], at(65.01), True),
        (at(60), "missed", ()),
    ),
    "already-handled": ((HOURLY, at(60), [], at(61), True), (None, "idle", ())),
    "forbid-while-active": (
        (HOURLY, at(0), [active("a")], at(60), True),
        (at(60), "forbidden", ()),
    ),
    "forbid-after-it-ended": ((HOURLY, at(0), [done("a", 0)], at(60), True), (at(60), "start", ())),
    "allow-runs-alongside": (
        (Timing(cron="0 * * * *", concurrency_policy="Allow"), at(0), [active("a")], at(60), True),
        (at(60), "start", ()),
    ),
    "replace-stops-the-active": (
        (
            Timing(cron="0 * * * *", concurrency_policy="Replace"),
            at(0),
            [active("a"), done("b", -60), active("c")],
            at(60),
            True,
        ),
        (at(60), "start", ("a", "c")),
    ),
    "suspended": (
        (Timing(cron="0 * * * *", suspend=True), at(0), [], at(60), True),
        (at(60), "suspended", ()),
    ),
    "cannot-run": ((HOURLY, at(0), [], at(60), False), (at(60), "unrunnable", ())),
    "replace-stops-nothing-when-suspended": (
        (
            Timing(cron="0 * * * *", concurrency_policy="Replace", suspend=True),
            at(0),
            [active("a")],
            at(60),
            True,
        ),
        (at(60), "suspended", ()),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_decide(case: str) -> None:
    (timing, handled_at, runs, now, runnable), (due, outcome, stop) = CASES[case]
    decision = firing.decide(timing, handled_at=handled_at, runs=runs, now=now, runnable=runnable)
    assert (decision.due, decision.outcome, decision.stop) == (due, outcome, stop)
    assert decision.start == (outcome == "start")
    assert decision.next_at == cron.following(timing.cron, timing.time_zone, now)


def test_the_next_fire_time_is_time_zone_aware() -> None:
    timing = Timing(cron="0 9 * * *", time_zone="Asia/Kolkata")  # 03:30 UTC
    decision = firing.decide(timing, handled_at=at(0), runs=[], now=at(0))
    assert decision.next_at == dt.datetime(2026, 11, 23, 3, 30, tzinfo=dt.UTC)


def test_a_cron_that_never_matches_is_never_due() -> None:
    decision = firing.decide(Timing(cron="0 0 30 2 *"), handled_at=at(0), runs=[], now=at(10**6))
    assert (decision.due, decision.outcome, decision.next_at) == (None, "idle", None)


@pytest.mark.parametrize(("limit", "kept"), [(0, []), (2, ["d", "c"]), (10, ["d", "c", "b", "a"])])
def test_history_keeps_the_newest_finished_runs(limit: int, kept: list[str]) -> None:
    runs = [done("a", 0), done("c", 120), active("x", 240), done("b", 60), done("d", 180)]
    pruned = firing.history_overflow(runs, limit=limit)
    assert "x" not in pruned
    assert sorted(set("abcd") - set(pruned)) == sorted(kept)
    timing = Timing(cron="0 * * * *", history_limit=limit)
    assert firing.decide(timing, handled_at=at(0), runs=runs, now=at(1)).prune == pruned


@pytest.mark.parametrize(
    ("policy", "runs", "outcome", "stop"),
    [
        ("Forbid", [], "start", ()),
        ("Forbid", [active("a")], "forbidden", ()),
        ("Allow", [active("a")], "start", ()),
        ("Replace", [active("a"), done("b", 0)], "start", ("a",)),
    ],
)
def test_run_now_follows_the_concurrency_policy(
    policy: firing.Policy, runs: list[Run], outcome: str, stop: tuple[str, ...]
) -> None:
    # Suspension and the deadline do not apply to a run asked for by hand.
    timing = Timing(
        cron="0 * * * *", concurrency_policy=policy, suspend=True, starting_deadline_s=1
    )
    decision = firing.decide_manual(timing, runs=runs)
    assert (decision.outcome, decision.stop, decision.due) == (outcome, stop, None)


def test_counting_starts_at_creation_and_restarts_when_the_clock_changes() -> None:
    timing = Timing(cron="0 * * * *")
    kw: dict[str, Any] = {"timing": timing, "first_seen": at(-5), "now": at(30)}
    assert firing.counting_from(handled_at=None, seen_hash=None, **kw) == at(-5)
    assert firing.counting_from(handled_at=at(0), seen_hash=timing.clock_hash(), **kw) == at(0)
    assert firing.counting_from(handled_at=at(0), seen_hash="other", **kw) == at(30)
    # Only the cron and the time zone count; the policy and the deadline do not.
    changed = Timing(cron="0 * * * *", concurrency_policy="Allow", starting_deadline_s=5)
    assert changed.clock_hash() == timing.clock_hash()
    assert Timing(cron="0 * * * *", time_zone="Europe/Paris").clock_hash() != timing.clock_hash()


def test_a_run_without_a_node_gives_up_only_past_the_deadline() -> None:
    run = active("a", 60)
    assert not firing.gives_up_waiting(HOURLY, run, now=at(10_000))
    timing = Timing(cron="0 * * * *", starting_deadline_s=60)
    assert not firing.gives_up_waiting(timing, run, now=at(61))
    assert firing.gives_up_waiting(timing, run, now=at(61.01))


# --- properties: the controller's loop, simulated ---------------------------------------

CRONS = ["*/5 * * * *", "0 * * * *", "17 3 * * *", "*/15 9-17 * * 1-5"]
POLICIES: list[firing.Policy] = ["Forbid", "Allow", "Replace"]


@st.composite
def loops(draw: st.DrawFn) -> tuple[Timing, list[dt.datetime], list[float]]:
    """A schedule and the moments its controller happened to run (gaps = the server
    was down), plus how long each started run lasts."""
    timing = Timing(
        cron=draw(st.sampled_from(CRONS)),
        time_zone=draw(st.sampled_from(["UTC", "Europe/Paris", "America/New_York"])),
        concurrency_policy=draw(st.sampled_from(POLICIES)),
        starting_deadline_s=draw(st.none() | st.integers(min_value=1, max_value=7200)),
    )
    gaps = draw(st.lists(st.floats(min_value=0, max_value=3 * 24 * 60), min_size=1, max_size=40))
    moments, moment = [], dt.datetime(2026, 3, 27, tzinfo=dt.UTC)
    for gap in gaps:
        moment += dt.timedelta(minutes=gap)
        moments.append(moment)
    durations = draw(st.lists(st.floats(min_value=0, max_value=600), min_size=40, max_size=40))
    return timing, moments, durations


@settings(max_examples=200, deadline=None)
@given(loops())
def test_no_fire_time_starts_twice_and_missed_ones_start_at_most_once(
    loop: tuple[Timing, list[dt.datetime], list[float]],
) -> None:
    timing, moments, durations = loop
    handled_at = moments[0] - dt.timedelta(minutes=1)
    runs: list[Run] = []
    started: list[dt.datetime] = []
    for i, now in enumerate(moments):
        # Runs end after their duration; the controller sees that at its next look.
        runs = [
            r
            if r.finished_at or r.scheduled_at + dt.timedelta(minutes=durations[j]) > now
            else Run(id=r.id, scheduled_at=r.scheduled_at, finished_at=now)
            for j, r in enumerate(runs)
        ]
        decision = firing.decide(timing, handled_at=handled_at, runs=runs, now=now)
        due = decision.due
        if due is None:
            assert decision.outcome == "idle"
            continue
        # The due fire time is the newest one passed, later than the last handled.
        assert handled_at < due <= now
        following = cron.following(timing.cron, timing.time_zone, due)
        assert following is not None and following > now
        if decision.start:
            deadline_s = timing.starting_deadline_s
            assert deadline_s is None or (now - due).total_seconds() <= deadline_s
            if timing.concurrency_policy == "Forbid":
                assert not any(r.active for r in runs)
            runs = [
                Run(id=r.id, scheduled_at=r.scheduled_at, finished_at=now)
                if r.id in decision.stop
                else r
                for r in runs
            ]
            runs.append(Run(id=str(i), scheduled_at=due, finished_at=None))
            started.append(due)
        handled_at = due
    assert started == sorted(set(started))  # never twice, in order
    assert len(started) <= len(moments)  # one look starts at most one run


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(CRONS), st.sampled_from(["UTC", "Europe/Paris"]), st.integers(0, 400))
def test_looking_at_every_fire_time_starts_every_fire_time(
    expression: str, zone: str, offset_h: int
) -> None:
    timing = Timing(cron=expression, time_zone=zone, concurrency_policy="Allow")
    handled_at = dt.datetime(2026, 3, 20, tzinfo=dt.UTC) + dt.timedelta(hours=offset_h)
    expected, moment = [], handled_at
    for _ in range(20):
        nxt = cron.following(expression, zone, moment)
        assert nxt is not None
        expected.append(nxt)
        moment = nxt
    started = []
    for fire in expected:
        decision = firing.decide(timing, handled_at=handled_at, runs=[], now=fire)
        assert decision.start and decision.due == fire
        started.append(fire)
        handled_at = fire
    assert started == expected
