"""What happens to an agent run after an attempt: done, retried later, or dead.

Called by the run worker (ingress/runner.py) when an attempt ends, and by the store
when it recovers a claim whose lease expired. Pure: the outcome, the counts, the
clock and the random draw come in as arguments.

Invariant: a run is retried only while it has attempts left, so every run ends,
`succeeded` or `dead`, after at most `max_attempts` attempts; the delay before a
retry doubles with each attempt up to `max_s`, with "equal jitter" (a draw between
half the step and the whole of it) so that runs failing together do not all come
back at the same moment, yet none comes back sooner than half its step.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How often and how soon a run is tried again."""

    max_attempts: int
    base_s: float
    max_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The run's next state and, for a retry, when it is due again."""

    state: Literal["succeeded", "failed", "dead"]
    next_attempt_at: dt.datetime | None = None


def delay_s(attempt: int, *, base_s: float, max_s: float, draw: float) -> float:
    """Seconds before the attempt after `attempt` (1-based), `draw` in [0, 1)."""
    step = min(max_s, base_s * 2.0 ** min(max(attempt - 1, 0), 60))
    return step / 2 + step / 2 * min(max(draw, 0.0), 1.0)


def decide(
    *, ok: bool, permanent: bool, attempts: int, policy: Policy, now: dt.datetime, draw: float
) -> Verdict:
    """After attempt number `attempts`: succeeded when `ok`; dead when the failure is
    `permanent` or no attempt is left; else failed, due again after the backoff."""
    if ok:
        return Verdict(state="succeeded")
    if permanent or attempts >= policy.max_attempts:
        return Verdict(state="dead")
    wait_s = delay_s(attempts, base_s=policy.base_s, max_s=policy.max_s, draw=draw)
    return Verdict(state="failed", next_attempt_at=now + dt.timedelta(seconds=wait_s))
