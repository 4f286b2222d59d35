"""The election and the cross-replica feed against a real Postgres, in-process: two
`Election`s on one database — one leads, the other waits, and takes over once the
first gives the lead back; a leader whose lock connection is killed steps down
(its leader tasks cancelled) and leads again once it wins the lock back; a leader
that lost its lock but has not noticed yet cannot place (the fence); a listener
whose connection is killed reconnects and tells its subscribers to resync."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text

from armillary.api.leadership import Leadership, LeaderTask
from armillary.errors import TemporaryError
from armillary.store import allocations, feed, listen, nodes
from armillary.store.database import Database
from armillary.store.leader import Election
from tests.support import postgres
from tests.support.waiting import wait_for_async

DEADLINE_S = 60.0


@pytest.fixture
def database(postgres_server: str) -> Iterator[str]:
    yield from postgres.fresh_database(postgres_server)


@pytest.fixture
async def db(database: str) -> AsyncIterator[Database]:
    opened = await Database.open(database)
    try:
        yield opened
    finally:
        await opened.close()


class Work:
    """A leader task that counts its terms and whether it is running."""

    def __init__(self) -> None:
        self.terms = 0
        self.running = False

    async def run(self) -> None:
        self.terms += 1
        self.running = True
        try:
            await asyncio.Event().wait()
        finally:
            self.running = False


def leadership(db: Database, work: Work) -> Leadership:
    return Leadership(
        Election(db, poll_s=0.05, check_s=0.1),
        [LeaderTask(name="work", make=work.run)],
        background={},
    )


async def test_one_leads_the_other_takes_over_when_it_gives_the_lead_back(
    db: Database,
) -> None:
    first_work, second_work = Work(), Work()
    first, second = leadership(db, first_work), leadership(db, second_work)
    await first.start()
    await second.start()
    assert (first.leader, second.leader) == (True, False)
    running = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        await wait_for_async(lambda: first_work.running, DEADLINE_S, what="the first's leader task")
        assert not second_work.running
        running[0].cancel()  # a clean stop, as the server's: the lock is released
        await asyncio.gather(running[0], return_exceptions=True)
        await first.stop()
        assert not first_work.running
        await wait_for_async(
            lambda: second.leader and second_work.running, DEADLINE_S, what="the second to lead"
        )
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await first.stop()
        await second.stop()


async def test_a_leader_whose_lock_connection_dies_steps_down_then_leads_again(
    db: Database,
) -> None:
    work = Work()
    lead = leadership(db, work)
    await lead.start()
    running = asyncio.create_task(lead.run())
    try:
        await wait_for_async(lambda: work.running, DEADLINE_S, what="the leader task")
        async with db.write() as conn:  # as a network cut or a Postgres restart would
            await conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
            )
        await wait_for_async(
            lambda: work.terms == 2 and work.running, DEADLINE_S, what="a second term"
        )
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await lead.stop()
    assert not work.running


def _allocation(allocation_id: str) -> allocations.Allocation:
    return allocations.Allocation(
        id=allocation_id,
        tenant="t",
        component="web",
        replica=0,
        node="node-a",
        spec_hash=allocation_id,
        spec={},
        report=None,
        created_at=dt.datetime.now(dt.UTC),
        reported_at=None,
    )


async def test_a_leader_that_lost_its_lock_unnoticed_cannot_place(db: Database) -> None:
    election = Election(db)
    assert await election.try_acquire()
    try:
        now = dt.datetime.now(dt.UTC)
        async with db.write() as conn:
            await nodes.register(
                conn, name="node-a", address="127.0.0.1", labels={}, capacity={}, now=now
            )
            await allocations.add(conn, [_allocation("placed-while-leading")])
        lock_pid = db.fence_pid
        assert lock_pid is not None
        async with db.write() as conn:  # the lock's session ends; nobody checked it yet
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lock_pid})

        async def gone() -> bool:
            async with db.read() as conn:
                query = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
                return not (await conn.execute(query, {"pid": lock_pid})).scalar()

        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while not await gone():
            assert asyncio.get_running_loop().time() < deadline, "the session never ended"
            await asyncio.sleep(0.02)
        with pytest.raises(TemporaryError, match="no longer leads"):
            async with db.write() as conn:
                await allocations.add(conn, [_allocation("placed-after-losing")])
        async with db.read() as conn:
            held = {a.id for a in await allocations.list_all(conn)}
        assert held == {"placed-while-leading"}
    finally:
        await election.release()
    assert db.fence_pid is None


async def test_a_listener_that_lost_its_connection_says_resync(db: Database) -> None:
    db.sender = "reader"
    listener = listen.Listener(db, check_s=0.1)
    heard = db.feed.subscribe()
    listening = asyncio.create_task(listener.run())
    writer = await Database.open(db.url, migrate=False)
    writer.sender = "writer"
    try:
        await asyncio.wait_for(listener.ready.wait(), timeout=DEADLINE_S)
        async with writer.write() as conn:
            await conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'armillary listener'"
            )
        resync = await asyncio.wait_for(heard.get(), timeout=DEADLINE_S)
        assert resync.kind == feed.RESYNC
        sent = feed.Change(kind="Tenant", name=uuid.uuid4().hex)  # heard again after it
        async with writer.write() as conn:
            feed.record(conn.info, sent)
        assert await asyncio.wait_for(heard.get(), timeout=DEADLINE_S) == sent
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await writer.close()
