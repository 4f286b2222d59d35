"""Waiting on conditions with deadlines, never on fixed sleeps.

`wait_for` polls from a test's own thread (HTTP to a server, files, processes);
`wait_for_async` polls from inside the event loop the code under test shares, so it
yields to that loop between polls. Both fail with what they last saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal, TypeVar

T = TypeVar("T")

Describe = str | Callable[[], object]


def _timed_out(timeout_s: float, what: Describe, last: object) -> AssertionError:
    detail = what() if callable(what) else what
    return AssertionError(f"timed out after {timeout_s}s waiting for {detail}; last: {last!r}")


def wait_for(
    predicate: Callable[[], T | Literal[False] | None],
    timeout_s: float = 30.0,
    *,
    every_s: float = 0.02,
    what: Describe = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy and return that; fail after
    `timeout_s`. `what` (text, or a function called on failure) names the condition."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise _timed_out(timeout_s, what, last)
        time.sleep(every_s)


async def wait_for_async(
    predicate: Callable[[], T | Literal[False] | None],
    timeout_s: float = 10.0,
    *,
    every_s: float = 0.005,
    what: Describe = "condition",
) -> T:
    """`wait_for` inside an event loop: the loop runs between polls (in-process state is
    cheap to read, hence the shorter interval)."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise _timed_out(timeout_s, what, last)
        await asyncio.sleep(every_s)
