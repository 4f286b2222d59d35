"""drains.decide(): when a draining node is drained, and what its deadline stops; and
the CLI's pure parts of `nodes drain` (the deadline option, the progress counts)."""

from __future__ import annotations

import datetime as dt

import pytest

from armillary import wire
from armillary.cli import nodes as nodes_cli
from armillary.control.drains import Decision, Held, decide

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(seconds=30)


def service(id: str, state: str | None = "running") -> Held:
    return Held(id=id, job=False, state=state)


def job(id: str, state: str | None = "running") -> Held:
    return Held(id=id, job=True, state=state)


@pytest.mark.parametrize(
    ("held", "deadline", "expected"),
    [
        ([], None, Decision(drained=True)),
        ([], NOW, Decision(drained=True)),
        ([job("j", "succeeded"), job("k", "failed")], None, Decision(drained=True)),
        ([service("s")], None, Decision()),  # no deadline: wait as long as it takes
        ([service("s")], LATER, Decision(recheck_s=30.0)),  # look again at the deadline
        ([service("s"), job("j")], NOW, Decision(stop=("s", "j"))),  # at it: stop the rest
        ([service("s", None), job("j", "succeeded")], NOW, Decision(stop=("s",))),
        # A service that has ended (failed to start) still holds its slot there: moved.
        ([service("s", "failed")], None, Decision()),
    ],
)
def test_decide(held: list[Held], deadline: dt.datetime | None, expected: Decision) -> None:
    assert decide(held, deadline_at=deadline, now=NOW) == expected


def test_a_deadline_in_the_past_stops_everything_that_runs() -> None:
    held = [service("a"), job("b", "starting"), job("c", "succeeded")]
    assert decide(held, deadline_at=NOW - dt.timedelta(hours=1), now=NOW).stop == ("a", "b")


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0), ("45", 45), ("90s", 90), ("15m", 900), ("1h", 3600)]
)
def test_deadline_durations(text: str, seconds: int) -> None:
    assert nodes_cli.deadline_s(text) == seconds


def replica(
    node: str, replica: int, state: str, *, component: str = "web", type: str = "service"
) -> wire.Replica:
    return wire.Replica.model_validate(
        {
            "id": f"{node}-{component}-{replica}-{state}",
            "tenant": "acme",
            "component": component,
            "replica": replica,
            "node": node,
            "type": type,
            "specHash": "h",
            "ports": {},
            "report": {"state": state},
            "createdAt": "2026-12-01T12:00:00Z",
        }
    )


def test_progress_counts_what_is_left_moved_and_waiting() -> None:
    before = {("acme", "web", i) for i in range(4)}
    now = [
        replica("a", 0, "running"),  # left, its successor is starting
        replica("b", 0, "starting"),
        replica("a", 1, "running"),  # left, no successor yet
        replica("b", 2, "running"),  # moved
        replica("b", 3, "starting"),  # waiting (its old one failed on a: left too)
        replica("a", 0, "succeeded", component="seed", type="job"),  # finished: not left
        replica("a", 3, "failed"),  # a service that failed there is moved all the same
        replica("b", 9, "running", component="other"),  # not one of the drain's
    ]
    assert nodes_cli.progress("a", before, now) == nodes_cli.Progress(left=3, moved=1, waiting=2)
