"""A clock a test moves by hand, for code that takes `clock=` (controllers, the driver)."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Clock(Generic[T]):
    """`clock()` answers `clock.now`; the test sets `now`."""

    def __init__(self, now: T) -> None:
        self.now = now

    def __call__(self) -> T:
        return self.now
