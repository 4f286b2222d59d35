"""Restart decisions: what the supervisor does after a replica's process exits.

Called by `node.supervisor` from the callback that saw the exit, after a spawn that
failed (port in use, command not found) and when resuming from the state file. Pure:
the exit code, the uptime and the counters come in as arguments, a `Decision` comes
out, so every case is a table row in tests/unit/test_restart.py.

Invariants: the first failure after a good stretch restarts at once (delay 0);
consecutive failures back off exponentially up to `backoff_max_s`; a process that
stayed up `RESET_AFTER_S` resets the count; a job that exited 0 never runs again; a
spawn that failed is never retried at once, so a taken port cannot spin the loop.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Literal

from armillary.protocol import ReplicaState, Restart

RESET_AFTER_S = 10.0  # a process up this long starts the consecutive count afresh
SPAWN_RETRY_MIN_S = 0.1  # floor for retrying a spawn that failed before any process ran
_MAX_DOUBLINGS = 60  # 2**60 × anything ≥ any backoff_max_s; keeps floats finite

Kind = Literal["service", "job"]
Policy = Literal["always", "on-failure", "never"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Exit:
    """One ended attempt: a process that exited, or a spawn that failed."""

    kind: Kind
    restart: Restart
    exit_code: int | None  # negative: killed by signal -N; None: unknown or never ran
    consecutive: int  # consecutive failures before this one
    uptime_s: float  # how long the process ran (0 when it never started)
    reason: str | None = None  # Timeout, PortInUse, CommandNotFound, … when not a plain exit
    detail: str | None = None  # for people, when `reason` is set
    spawn_failed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What to report now and whether (and when) to start the process again."""

    restart: bool
    delay_s: float
    consecutive: int  # the new consecutive-failure count
    state: ReplicaState  # reported until the restart, or for good
    reason: str | None
    message: str


def policy_for(kind: Kind, restart: Restart) -> Policy:
    """The effective policy: unset means "always" for services, "on-failure" for jobs."""
    if restart.policy is not None:
        return restart.policy
    return "always" if kind == "service" else "on-failure"


def delay_s(consecutive: int, restart: Restart) -> float:
    """Wait before the restart that follows the `consecutive`-th failure in a row.

    0 for the first; then `backoff_initial_s * 2**(n-2)`, capped at `backoff_max_s`.
    """
    if consecutive <= 1:
        return 0.0
    doublings = min(consecutive - 2, _MAX_DOUBLINGS)
    return float(min(restart.backoff_initial_s * 2.0**doublings, restart.backoff_max_s))


def retry_delay_s(consecutive: int, restart: Restart, *, spawn_failed: bool) -> float:
    """`delay_s`, except that a failed spawn is never retried at once."""
    if not spawn_failed:
        return delay_s(consecutive, restart)
    return max(delay_s(consecutive + 1, restart), SPAWN_RETRY_MIN_S)


def describe(exit_code: int | None) -> str:
    """`exited with code 3`, `killed by signal 9 (SIGKILL)`, `exited (code unknown)`."""
    if exit_code is None:
        return "exited (code unknown)"
    if exit_code >= 0:
        return f"exited with code {exit_code}"
    number = -exit_code
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"killed by signal {number}"
    return f"killed by signal {number} ({name})"


def after_exit(ended: Exit) -> Decision:
    """Decide what follows `ended`. See the module docstring for the rules."""
    consecutive = 0 if ended.uptime_s >= RESET_AFTER_S else ended.consecutive
    failed = ended.spawn_failed or ended.reason is not None or ended.exit_code != 0
    what = ended.detail if ended.detail is not None else describe(ended.exit_code)
    policy = policy_for(ended.kind, ended.restart)

    if ended.kind == "job" and not failed:
        return Decision(
            restart=False, delay_s=0.0, consecutive=0, state="succeeded", reason=None, message=what
        )
    if policy == "never" or (policy == "on-failure" and not failed):
        return Decision(
            restart=False,
            delay_s=0.0,
            consecutive=consecutive + 1 if failed else consecutive,
            state="failed",
            reason=ended.reason or "Exited",
            message=f"{what}; restart policy is {policy}",
        )
    consecutive += 1
    limit = ended.restart.crash_loop_after
    if ended.kind == "job" and consecutive >= limit:
        return Decision(
            restart=False,
            delay_s=0.0,
            consecutive=consecutive,
            state="failed",
            reason=ended.reason or "Exited",
            message=f"{what}; gave up after {consecutive} failures in a row",
        )
    wait_s = retry_delay_s(consecutive, ended.restart, spawn_failed=ended.spawn_failed)
    state: ReplicaState = "backoff"
    reason = ended.reason or "Exited"
    if ended.spawn_failed:
        state = "failed"
    elif ended.kind == "service" and consecutive >= limit:
        state, reason = "crashloop", "CrashLoop"
    return Decision(
        restart=True,
        delay_s=wait_s,
        consecutive=consecutive,
        state=state,
        reason=reason,
        message=f"{what}; {consecutive} in a row; restarting in {wait_s:.3g}s",
    )
