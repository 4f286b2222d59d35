"""WorkQueue: de-duplication, per-key serialisation, delays (with an injected clock)."""

from __future__ import annotations

import asyncio

from armillary.control.queue import WorkQueue


async def test_a_key_is_queued_once_however_often_it_is_added() -> None:
    queue = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert [await queue.get(), await queue.get()] == ["a", "b"]


async def test_a_key_in_progress_is_not_handed_out_again_but_requeued_after_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")  # while processing: marked dirty, not queued
    assert len(queue) == 0
    queue.done("a")
    assert len(queue) == 1
    assert await queue.get() == "a"


async def test_delayed_keys_come_when_due() -> None:
    now = [100.0]
    queue = WorkQueue(clock=lambda: now[0])
    queue.add_after("later", 5)
    queue.add("now")
    assert await queue.get() == "now"
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    now[0] = 106.0
    queue.add("poke")  # wakes the waiter, which then also sees "later" is due
    assert {await getter, await queue.get()} == {"later", "poke"}
