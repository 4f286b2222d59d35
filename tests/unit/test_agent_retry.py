"""What follows an agent run's attempt (armillary.ingress.retry): success ends it, a
failure is retried after an exponential, jittered, capped delay while attempts are
left, and a permanent failure or the last attempt ends it dead."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.ingress import retry

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
POLICY = retry.Policy(max_attempts=3, base_s=2, max_s=30)


@pytest.mark.parametrize(
    ("attempt", "draw", "expected_s"),
    [
        (1, 0.0, 1.0),  # half of the 2 s step
        (1, 1.0, 2.0),
        (2, 0.0, 2.0),
        (3, 0.5, 6.0),  # 8 s step: 4 + 2
        (5, 1.0, 30.0),  # 32 s capped at 30
        (60, 0.0, 15.0),
        (0, 0.0, 1.0),  # nonsense counts as the first
    ],
)
def test_the_delay_doubles_with_jitter_up_to_the_cap(
    attempt: int, draw: float, expected_s: float
) -> None:
    assert retry.delay_s(attempt, base_s=2, max_s=30, draw=draw) == pytest.approx(expected_s)


@pytest.mark.parametrize(
    ("ok", "permanent", "attempts", "state"),
    [
        (True, False, 1, "succeeded"),
        (True, False, 3, "succeeded"),
        (False, False, 1, "failed"),
        (False, False, 2, "failed"),
        (False, False, 3, "dead"),
        (False, True, 1, "dead"),
    ],
)
def test_the_verdict(ok: bool, permanent: bool, attempts: int, state: str) -> None:
    verdict = retry.decide(
        ok=ok, permanent=permanent, attempts=attempts, policy=POLICY, now=NOW, draw=0.5
    )
    assert verdict.state == state
    assert (verdict.next_attempt_at is not None) == (state == "failed")


@given(
    attempt=st.integers(min_value=1, max_value=1000),
    base_s=st.floats(min_value=0.01, max_value=100),
    max_s=st.floats(min_value=0.01, max_value=3600),
    draw=st.floats(min_value=0, max_value=1),
)
def test_a_delay_is_never_over_the_cap_nor_under_half_its_step(
    attempt: int, base_s: float, max_s: float, draw: float
) -> None:
    step = min(max_s, base_s * 2.0 ** min(attempt - 1, 60))
    delay = retry.delay_s(attempt, base_s=base_s, max_s=max_s, draw=draw)
    assert step / 2 <= delay <= step <= max_s


@given(attempts=st.integers(min_value=1, max_value=50), max_attempts=st.integers(1, 50))
def test_every_run_ends_after_at_most_max_attempts(attempts: int, max_attempts: int) -> None:
    policy = retry.Policy(max_attempts=max_attempts, base_s=1, max_s=10)
    verdict = retry.decide(
        ok=False, permanent=False, attempts=attempts, policy=policy, now=NOW, draw=0.0
    )
    assert (verdict.state == "dead") == (attempts >= max_attempts)
    if verdict.next_attempt_at is not None:
        assert verdict.next_attempt_at > NOW
