"""The controller driver: requeues, backoff, terminal failures and what wakes it, with
the clock and the resync's sleep injected (nothing here sleeps)."""

from __future__ import annotations

import asyncio

import pytest

from armillary.control.driver import REPORT_GATHER_S, Driver, Result
from armillary.errors import PermanentError, TemporaryError
from armillary.store.feed import Change, Feed
from tests.support.clock import Clock


class Scripted:
    """A controller whose reconciles answer from a script, per key (then `Result()`)."""

    name = "scripted"

    def __init__(self, keys: set[str] | None = None) -> None:
        self.keys = keys or set()
        self.script: dict[str, list[Result | Exception]] = {}
        self.reconciled: list[str] = []
        self.given_up: list[tuple[str, str]] = []
        self.give_up_fails = False
        self.done = asyncio.Event()
        self.expected = 0

    async def reconcile(self, key: str) -> Result:
        self.reconciled.append(key)
        if len(self.reconciled) >= self.expected:
            self.done.set()
        answers = self.script.get(key, [])
        answer = answers.pop(0) if answers else Result()
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def keys_for(self, event: Change) -> set[str]:
        return {event.name}

    async def all_keys(self) -> set[str]:
        return set(self.keys)

    async def give_up(self, key: str, reason: str) -> None:
        if self.give_up_fails:
            raise RuntimeError("the store is away")
        self.given_up.append((key, reason))


def driver(controller: Scripted, clock: Clock[float], *, backoff_max_s: float = 30.0) -> Driver:
    return Driver(controller, Feed(), clock=clock, backoff_max_s=backoff_max_s)


async def take(d: Driver, key: str) -> None:
    """Hand out `key`, which must be due now, as a worker would, and finish it."""
    assert d.queue.ready() == [key]
    assert await d.queue.get() == key
    d.queue.done(key)


async def test_a_requeue_brings_the_key_back_after_its_delay() -> None:
    clock, controller = Clock(100.0), Scripted()
    controller.script["a"] = [Result(requeue_after_s=5.0)]
    d = driver(controller, clock)
    await d.process("a")
    assert d.queue.delayed() == {"a": 105.0}
    clock.now = 104.9
    assert d.queue.ready() == []
    clock.now = 105.0
    assert d.queue.ready() == ["a"]


async def test_failures_back_off_doubling_to_the_cap_and_a_success_resets() -> None:
    clock, controller = Clock(100.0), Scripted()
    failure: list[Result | Exception] = [RuntimeError("boom")] * 5
    controller.script["a"] = [*failure, Result(), RuntimeError("again")]
    d = driver(controller, clock, backoff_max_s=1.0)
    delays = []
    for _ in range(5):
        await d.process("a")
        (due,) = d.queue.delayed().values()
        delays.append(round(due - clock.now, 6))
        clock.now = due
        await take(d, "a")
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0]
    await d.process("a")  # succeeds
    assert d.queue.delayed() == {}
    await d.process("a")  # fails again: the count started over
    assert d.queue.delayed() == {"a": pytest.approx(clock.now + 0.1)}


async def test_a_temporary_error_is_retried_after_the_delay_it_names() -> None:
    clock, controller = Clock(100.0), Scripted()
    controller.script["a"] = [TemporaryError("node busy", delay_s=7.0)]
    d = driver(controller, clock)
    await d.process("a")
    assert d.queue.delayed() == {"a": 107.0}


async def test_a_permanent_error_is_terminal_until_the_key_changes() -> None:
    clock, controller = Clock(100.0), Scripted(keys={"a", "b"})
    controller.script["a"] = [PermanentError("the release record is unreadable")]
    d = driver(controller, clock)
    await d.process("a")
    # No retry, no backoff; the controller says why where the status is read.
    assert d.queue.delayed() == {}
    assert d.queue.ready() == []
    assert controller.given_up == [("a", "the release record is unreadable")]
    assert d.stopped == {"a": "the release record is unreadable"}
    # The resync leaves it alone, even long after.
    clock.now += 3600
    await d.resync()
    assert d.queue.ready() == ["b"]
    await take(d, "b")
    # Its next change brings it back.
    await d.changed(Change(kind="Tenant", name="a"))
    assert d.stopped == {}
    await take(d, "a")
    await d.process("a")
    assert controller.given_up == [("a", "the release record is unreadable")]
    assert d.queue.delayed() == {}


async def test_a_permanent_error_whose_condition_cannot_be_written_is_retried() -> None:
    clock, controller = Clock(100.0), Scripted()
    controller.script["a"] = [PermanentError("bad")]
    controller.give_up_fails = True
    d = driver(controller, clock)
    await d.process("a")
    assert d.stopped == {}
    assert d.queue.delayed() == {"a": pytest.approx(100.1)}


async def test_run_resyncs_on_the_injected_sleep_and_ignores_status_writes() -> None:
    clock, controller = Clock(100.0), Scripted(keys={"a"})
    slept: list[float] = []
    never = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await never.wait()

    feed = Feed()
    d = Driver(controller, feed, workers=1, resync_s=30.0, clock=clock, sleep=sleep)
    controller.expected = 1
    task = asyncio.create_task(d.run())
    try:
        async with asyncio.timeout(10):
            await controller.done.wait()  # the first resync's key
        controller.done.clear()
        controller.expected = 2
        # A status write first, a spec change after: one worker takes keys in order,
        # so had the status write queued "t", it would come before "s".
        feed.publish([Change(kind="Tenant", name="t", status=True)])
        feed.publish([Change(kind="Tenant", name="s")])
        async with asyncio.timeout(10):
            await controller.done.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert controller.reconciled == ["a", "s"]
    assert slept == [30.0]


async def test_a_later_resync_spreads_the_keys_over_its_period() -> None:
    clock, controller = Clock(100.0), Scripted(keys={"a", "b", "c", "d"})
    d = driver(controller, clock)
    await d.resync(spread_s=300.0)
    assert d.queue.ready() == ["a"]
    assert d.queue.delayed() == {"b": 175.0, "c": 250.0, "d": 325.0}


async def test_a_report_brings_its_key_back_after_a_short_gather_a_spec_change_at_once() -> None:
    clock, controller = Clock(100.0), Scripted()
    d = driver(controller, clock)
    await d.changed(Change(kind="Allocation", name="t", tenant="t", report=True))
    assert d.queue.ready() == []
    assert d.queue.delayed() == {"t": pytest.approx(100.0 + REPORT_GATHER_S)}
    await d.changed(Change(kind="Tenant", name="t"))
    assert d.queue.ready() == ["t"]
