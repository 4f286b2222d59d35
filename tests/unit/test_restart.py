"""`restart.after_exit` and the backoff: what follows an exit, as values in, values out.

Also `health.step`, the counting rule behind starting → running → unhealthy.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.node import health, restart
from armillary.protocol import ExecProbe, HealthCheck, Restart

FAST = Restart(backoff_initial_s=0.5, backoff_max_s=8, crash_loop_after=3)


def ended(**overrides: Any) -> restart.Exit:
    values: dict[str, Any] = {
        "kind": "service",
        "restart": FAST,
        "exit_code": 1,
        "consecutive": 0,
        "uptime_s": 0.1,
    }
    values.update(overrides)
    return restart.Exit(**values)


# --- backoff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consecutive", "expected_s"),
    [(0, 0.0), (1, 0.0), (2, 0.5), (3, 1.0), (4, 2.0), (5, 4.0), (6, 8.0), (7, 8.0), (10**6, 8.0)],
)
def test_delay_is_immediate_then_doubles_up_to_the_cap(consecutive: int, expected_s: float) -> None:
    assert restart.delay_s(consecutive, FAST) == expected_s


@given(st.integers(min_value=1, max_value=5000))
def test_delay_never_shrinks_and_never_passes_the_cap(n: int) -> None:
    assert restart.delay_s(n, FAST) <= restart.delay_s(n + 1, FAST) <= FAST.backoff_max_s


def test_a_failed_spawn_is_never_retried_at_once() -> None:
    zero = Restart(backoff_initial_s=0, backoff_max_s=1)
    assert restart.retry_delay_s(0, zero, spawn_failed=True) == restart.SPAWN_RETRY_MIN_S
    assert restart.retry_delay_s(1, FAST, spawn_failed=True) == 0.5
    assert restart.retry_delay_s(1, FAST, spawn_failed=False) == 0.0


# --- decisions ----------------------------------------------------------------------------

CASES: list[tuple[str, dict[str, Any], tuple[bool, float, int, str, str | None]]] = [
    # id, exit overrides, (restart, delay_s, consecutive, state, reason)
    ("service first crash: immediate", {}, (True, 0.0, 1, "backoff", "Exited")),
    ("service second crash: backoff", {"consecutive": 1}, (True, 0.5, 2, "backoff", "Exited")),
    ("service crash loop", {"consecutive": 2}, (True, 1.0, 3, "crashloop", "CrashLoop")),
    ("service exit 0 restarts too", {"exit_code": 0}, (True, 0.0, 1, "backoff", "Exited")),
    (
        "a long run resets the count",
        {"consecutive": 9, "uptime_s": restart.RESET_AFTER_S},
        (True, 0.0, 1, "backoff", "Exited"),
    ),
    (
        "service never",
        {"restart": Restart(policy="never")},
        (False, 0.0, 1, "failed", "Exited"),
    ),
    (
        "service on-failure, exit 0",
        {"restart": Restart(policy="on-failure"), "exit_code": 0},
        (False, 0.0, 0, "failed", "Exited"),
    ),
    (
        "service on-failure, unknown exit",
        {"restart": Restart(policy="on-failure"), "exit_code": None},
        (True, 0.0, 1, "backoff", "Exited"),
    ),
    ("job success", {"kind": "job", "exit_code": 0}, (False, 0.0, 0, "succeeded", None)),
    (
        "job success under always",
        {"kind": "job", "exit_code": 0, "restart": Restart(policy="always")},
        (False, 0.0, 0, "succeeded", None),
    ),
    ("job failure retries", {"kind": "job"}, (True, 0.0, 1, "backoff", "Exited")),
    ("job gives up", {"kind": "job", "consecutive": 2}, (False, 0.0, 3, "failed", "Exited")),
    (
        "job never",
        {"kind": "job", "restart": Restart(policy="never"), "exit_code": -9},
        (False, 0.0, 1, "failed", "Exited"),
    ),
    (
        "job timeout is a failure",
        {"kind": "job", "exit_code": -9, "reason": "Timeout"},
        (True, 0.0, 1, "backoff", "Timeout"),
    ),
    (
        "spawn failure: failed, retried later",
        {"exit_code": None, "reason": "PortInUse", "spawn_failed": True, "uptime_s": 0},
        (True, 0.5, 1, "failed", "PortInUse"),
    ),
    (
        "spawn failures keep the reason in a loop",
        {"exit_code": None, "reason": "CommandNotFound", "spawn_failed": True, "consecutive": 5},
        (True, 8.0, 6, "failed", "CommandNotFound"),
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_after_exit(
    overrides: dict[str, Any], expected: tuple[bool, float, int, str, str | None]
) -> None:
    decision = restart.after_exit(ended(**overrides))
    got = (
        decision.restart,
        decision.delay_s,
        decision.consecutive,
        decision.state,
        decision.reason,
    )
    assert got == expected


def test_messages_say_what_happened_and_what_comes_next() -> None:
    assert restart.after_exit(ended(exit_code=-9)).message.startswith(
        "killed by signal 9 (SIGKILL); 1 in a row; restarting in 0s"
    )
    never = restart.after_exit(ended(exit_code=4, restart=Restart(policy="never")))
    assert never.message == "exited with code 4; restart policy is never"
    port = restart.after_exit(
        ended(reason="PortInUse", detail="port 8080 (http) is in use", spawn_failed=True)
    )
    assert port.message.startswith("port 8080 (http) is in use; 1 in a row; restarting in")


@given(
    kind=st.sampled_from(["service", "job"]),
    policy=st.sampled_from([None, "always", "on-failure", "never"]),
    exit_code=st.none() | st.integers(min_value=-64, max_value=255),
    consecutive=st.integers(min_value=0, max_value=50),
    uptime_s=st.floats(min_value=0, max_value=100),
)
def test_decisions_hold_the_invariants(
    kind: str, policy: str | None, exit_code: int | None, consecutive: int, uptime_s: float
) -> None:
    rules = Restart(policy=policy, backoff_initial_s=0.5, backoff_max_s=8, crash_loop_after=3)  # type: ignore[arg-type]
    decision = restart.after_exit(
        ended(
            kind=kind,
            restart=rules,
            exit_code=exit_code,
            consecutive=consecutive,
            uptime_s=uptime_s,
        )
    )
    assert 0 <= decision.delay_s <= rules.backoff_max_s
    if kind == "job" and exit_code == 0:
        assert (decision.restart, decision.state) == (False, "succeeded")
    if restart.policy_for(kind, rules) == "never":  # type: ignore[arg-type]
        assert not decision.restart
    if decision.restart:
        assert decision.state in ("backoff", "crashloop")
        first = consecutive == 0 or uptime_s >= restart.RESET_AFTER_S
        assert (decision.delay_s == 0) == first
    else:
        assert decision.state in ("succeeded", "failed")


# --- health counting ----------------------------------------------------------------------

CHECK = HealthCheck(exec=ExecProbe(command=["true"]), success_threshold=2, failure_threshold=3)


def run_steps(results: str, *, counts: bool = True) -> list[bool | None]:
    """Feed `+` (pass) and `-` (fail) results; the `healthy` value after each."""
    status = health.Status()
    seen = []
    for result in results:
        status = health.step(status, ok=result == "+", counts=counts, check=CHECK)
        seen.append(status.healthy)
    return seen


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ("+", [None]),
        ("++", [None, True]),
        ("+-+", [None, None, None]),
        ("---", [None, None, False]),
        ("++--", [None, True, True, True]),
        ("++---", [None, True, True, True, False]),
        ("---+", [None, None, False, False]),
        ("---++", [None, None, False, False, True]),
        ("++-+--", [None, True, True, True, True, True]),
    ],
)
def test_health_thresholds(results: str, expected: list[bool | None]) -> None:
    assert run_steps(results) == expected


def test_failures_in_the_start_period_do_not_count() -> None:
    assert run_steps("------", counts=False) == [None] * 6
    assert run_steps("--++", counts=False) == [None, None, None, True]


@pytest.mark.parametrize(
    ("port", "expected"), [(None, 8001), ("admin", 9001), (7000, 7000), ("web", 8001)]
)
def test_probe_port_resolution(port: str | int | None, expected: int) -> None:
    assert health.resolve_port(port, {"web": 8001, "admin": 9001}) == expected


def test_probe_port_errors_name_the_choices() -> None:
    with pytest.raises(LookupError, match="no port"):
        health.resolve_port(None, {})
    with pytest.raises(LookupError, match=r"unknown port 'db'.*\['web'\]"):
        health.resolve_port("db", {"web": 1})
