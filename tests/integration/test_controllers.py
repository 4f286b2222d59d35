"""The controllers against a real store (SQLite and Postgres), in-process, clock injected:
a status write wakes no spec watcher, provisioning waits on the feed rather than
polling, and a tenant's reconcile reads and writes its rollouts once."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from armillary.auth.keys import KeyRing
from armillary.auth.sealing import Sealer
from armillary.control import apply as applying
from armillary.control.driver import Driver, Result
from armillary.control.provisioning import Provisioner
from armillary.control.schedules import ScheduleController
from armillary.control.tenants import TenantController
from armillary.runtime.nodes import NodesRuntime
from armillary.store import feed, provisioning_runs, repository
from armillary.store import rollouts as rollout_store
from armillary.store.database import Database
from tests.support import documents
from tests.support.clock import Clock

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _stack(
    name: str, *, replicas: int = 1, components: int = 1, version: str = "1"
) -> dict[str, Any]:
    web = [
        {"name": f"web{i}", "command": ["sleep", "60"], "env": {"V": version}, "replicas": replicas}
        for i in range(components)
    ]
    return documents.stack(name, *web)


def _tenant(name: str, *, stack: str, org: str = "acme") -> dict[str, Any]:
    return documents.tenant(name, stack, org=org)


async def _apply(db: Database, *documents: dict[str, Any]) -> None:
    await applying.apply(db, applying.parse_documents(list(documents)), prune=False, now=NOW)


def _drain(queue: asyncio.Queue[feed.Change]) -> list[feed.Change]:
    found = []
    while not queue.empty():
        found.append(queue.get_nowait())
    return found


class Statements:
    """The SQL statements every engine sends while watched, and a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._waiters: list[tuple[str, asyncio.Event]] = []

    def note(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(statement)
        for text, waiter in self._waiters:
            if text in statement:
                waiter.set()

    def waiter(self, text: str) -> asyncio.Event:
        """Set once a statement containing `text` is sent from now on."""
        waiter = asyncio.Event()
        self._waiters.append((text, waiter))
        return waiter

    def count(self, text: str) -> int:
        return sum(text in s for s in self.seen)


@contextmanager
def _statements() -> Iterator[Statements]:
    statements = Statements()
    event.listen(Engine, "before_cursor_execute", statements.note)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", statements.note)


# --- status writes and the feed --------------------------------------------------------


async def test_a_tenant_status_write_wakes_no_spec_watcher(store: Database) -> None:
    await _apply(store, documents.org("acme"), _stack("s"), _tenant("t1", stack="s"))
    specs = store.feed.subscribe()  # as the controller drivers subscribe
    statuses = store.feed.subscribe(status=True)
    controller = TenantController(store, NodesRuntime(store), clock=lambda: NOW)
    try:
        await controller.reconcile("t1")  # no node: the replica is unplaced, said in status
        heard_specs, heard_statuses = _drain(specs), _drain(statuses)
    finally:
        store.feed.unsubscribe(specs)
        store.feed.unsubscribe(statuses)
    async with store.read() as conn:
        stored = await repository.require(conn, "Tenant", "t1")
    assert stored.status["conditions"], "the reconcile wrote a status"
    # Whoever waits on status hears of it; the drivers (tenants, schedules) do not, so
    # the tenant is not queued again and the schedule controller is not woken.
    assert feed.Change(kind="Tenant", name="t1", status=True) in heard_statuses
    assert [e for e in heard_specs if e.kind == "Tenant"] == []


class CountedTenants(TenantController):
    """The real tenant controller, noting each key it reconciles."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, NodesRuntime(db), clock=lambda: NOW)
        self.reconciled: list[str] = []
        self.seen_last = asyncio.Event()

    async def reconcile(self, key: str) -> Result:
        self.reconciled.append(key)
        result = await super().reconcile(key)
        if key == "last":
            self.seen_last.set()
        return result


class CountedSchedules(ScheduleController):
    """The real schedule controller, noting each Tenant event it is woken by."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, NodesRuntime(db), clock=lambda: NOW)
        self.woken_by: list[str] = []
        self.seen_last = asyncio.Event()

    async def keys_for(self, event: feed.Change) -> set[str]:
        if event.kind == "Tenant":
            self.woken_by.append(event.name)
            if event.name == "last":
                self.seen_last.set()
        return await super().keys_for(event)


async def test_the_drivers_are_not_woken_by_the_status_a_reconcile_writes(
    store: Database,
) -> None:
    await _apply(store, documents.org("acme"), _stack("s"), _tenant("t1", stack="s"))
    tenants, schedules = CountedTenants(store), CountedSchedules(store)
    never = asyncio.Event()

    async def no_second_resync(_seconds: float) -> None:
        await never.wait()

    drivers = [
        Driver(controller, store.feed, workers=1, sleep=no_second_resync)
        for controller in (tenants, schedules)
    ]
    statuses = store.feed.subscribe(status=True)
    tasks = [asyncio.create_task(d.run()) for d in drivers]
    try:
        async with asyncio.timeout(30):  # the first resync reconciles t1, which writes status
            while (await statuses.get()).name != "t1":
                pass
        # A last spec event: each driver takes events, and its one worker keys, in order,
        # so anything the status write had queued or woken comes before it.
        store.feed.publish([feed.Change(kind="Tenant", name="last")])
        async with asyncio.timeout(30):
            await tenants.seen_last.wait()
            await schedules.seen_last.wait()
    finally:
        store.feed.unsubscribe(statuses)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert tenants.reconciled == ["t1", "last"]
    assert schedules.woken_by == ["last"]


async def test_status_callbacks_only_when_asked(store: Database) -> None:
    await _apply(store, documents.org("acme"), _stack("s"), _tenant("t1", stack="s"))
    spec_seen: list[feed.Change] = []
    all_seen: list[feed.Change] = []
    stop_specs = store.feed.watch(spec_seen.append)
    stop_all = store.feed.watch(all_seen.append, status=True)
    try:
        async with store.write() as conn:
            await repository.write_status(
                conn, kind="Tenant", name="t1", status={"x": 1}, expected_version=None, now=NOW
            )
        await _apply(store, _tenant("t1", stack="s", org="other"))
    finally:
        stop_specs()
        stop_all()
    assert spec_seen == [feed.Change(kind="Tenant", name="t1")]
    assert all_seen == [
        feed.Change(kind="Tenant", name="t1", status=True),
        feed.Change(kind="Tenant", name="t1"),
    ]


# --- provisioning waits on the feed ----------------------------------------------------


async def _settled(db: Database, run_id: str, runs: asyncio.Queue[feed.Change]) -> str:
    """The run's state once it ended; `runs` is a status subscription taken before."""
    async with asyncio.timeout(30):
        while True:
            state = (await provisioning_runs.get(db, run_id)).state
            if state not in ("pending", "running"):
                return state
            while (await runs.get()) != feed.Change(kind="ProvisionRun", name=run_id, status=True):
                pass


async def test_provisioning_wakes_on_the_tenant_status_not_a_poll(store: Database) -> None:
    """The deploy step waits for Ready with a fallback poll of an hour: only the feed's
    word that the tenant's status changed can end its wait within the test."""
    await _apply(store, _stack("s", replicas=1))
    sealer = Sealer(KeyRing(current=b"k" * 32), purpose="provisioning-tokens")
    provisioner = Provisioner(store, sealer=sealer, poll_s=3600.0)
    controller = TenantController(store, NodesRuntime(store), clock=lambda: NOW)
    runs = store.feed.subscribe(status=True)
    try:
        with _statements() as seen:
            run, _ = await provisioner.submit(
                {"org": "acme", "tenant": "t1", "stack": "s"},
                action="provision",
                idempotency_key=None,
            )
            # The deploy step has looked (the tenant is not Ready: no status yet) once it
            # reads the tenant's allocations for failed jobs; then it waits.
            looked = seen.waiter("FROM allocations")
            async with asyncio.timeout(30):
                await looked.wait()
            await _apply(store, _stack("s", replicas=0))
            await controller.reconcile("t1")  # Ready: nothing to run
            state = await _settled(store, run.id, runs)
            allocation_reads = seen.count("FROM allocations")
    finally:
        store.feed.unsubscribe(runs)
        await provisioner.close()
    assert state == "succeeded", (await provisioning_runs.get(store, run.id)).error
    # A look before the wait, the reconcile's, seed jobs' and verify's, and perhaps
    # one look woken by the revision the reconcile ended: no polling loop ran.
    assert allocation_reads <= 6, allocation_reads


# --- the tenant controller, clock injected ---------------------------------------------


async def _tenant_row(db: Database, name: str) -> repository.Stored:
    async with db.read() as conn:
        return await repository.require(conn, "Tenant", name)


def _condition(stored: repository.Stored, kind: str) -> dict[str, Any]:
    return next(c for c in stored.status["conditions"] if c["type"] == kind)


async def test_the_tenant_controller_on_an_injected_clock(store: Database) -> None:
    await _apply(store, documents.org("acme"), _stack("s", replicas=1), _tenant("t1", stack="s"))
    clock = Clock(NOW)
    controller = TenantController(store, NodesRuntime(store), clock=clock)
    result = await controller.reconcile("t1")  # no node takes the replica
    first = await _tenant_row(store, "t1")
    assert result.requeue_after_s is None  # stalled: the next node or change brings it back
    assert _condition(first, "Degraded")["status"] == "True"
    assert _condition(first, "Degraded")["lastTransitionTime"] == "2026-12-01T12:00:00Z"
    # An hour on, the same truths: nothing is written.
    clock.now = NOW + dt.timedelta(hours=1)
    await controller.reconcile("t1")
    assert (await _tenant_row(store, "t1")).resource_version == first.resource_version
    # Nothing to run: Ready, as of the clock's time.
    await _apply(store, _stack("s", replicas=0))
    result = await controller.reconcile("t1")
    ready = _condition(await _tenant_row(store, "t1"), "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "AllReplicasReady")
    assert ready["lastTransitionTime"] == "2026-12-01T13:00:00Z"
    assert result.requeue_after_s is None
    # Given up on (a PermanentError under the driver): it says why, keeps its counts.
    clock.now = NOW + dt.timedelta(hours=1, minutes=5)
    await controller.give_up("t1", "release web@1.2 names no commit")
    stored = await _tenant_row(store, "t1")
    ready, degraded = _condition(stored, "Ready"), _condition(stored, "Degraded")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "ReconcileFailed",
        "release web@1.2 names no commit",
    )
    assert (degraded["status"], degraded["reason"]) == ("True", "ReconcileFailed")
    assert degraded["lastTransitionTime"] == "2026-12-01T13:05:00Z"
    assert stored.status["replicas"] == {"desired": 0, "ready": 0, "updated": 0}


async def test_a_schedule_given_up_on_says_why(store: Database) -> None:
    schedule = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Schedule",
        "metadata": {"name": "t1-nightly"},
        "spec": {"tenant": "t1", "component": "web0", "cron": "0 * * * *"},
    }
    await _apply(
        store, documents.org("acme"), _stack("s", replicas=0), _tenant("t1", stack="s"), schedule
    )
    controller = ScheduleController(store, NodesRuntime(store), clock=lambda: NOW)
    await controller.reconcile("t1-nightly")
    await controller.give_up("t1-nightly", "the job's release is unreadable")
    async with store.read() as conn:
        stored = await repository.require(conn, "Schedule", "t1-nightly")
    ready = _condition(stored, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "ReconcileFailed",
        "the job's release is unreadable",
    )
    assert _condition(stored, "Degraded")["status"] == "True"


# --- one read, one decision, one write -------------------------------------------------


async def _reconcile_statements(store: Database, tenant: str, *, components: int) -> list[str]:
    """The statements of the reconcile that follows a change of
    every component of `tenant`'s stack (nothing to run, so each revision completes in
    the same reconcile that starts it)."""
    stack = f"{tenant}-stack"
    await _apply(
        store, _stack(stack, replicas=0, components=components), _tenant(tenant, stack=stack)
    )
    controller = TenantController(store, NodesRuntime(store), clock=lambda: NOW)
    await controller.reconcile(tenant)
    await _apply(store, _stack(stack, replicas=0, components=components, version="2"))
    with _statements() as seen:
        await controller.reconcile(tenant)
    async with store.read() as conn:
        history = await rollout_store.history(conn, tenant)
    assert [(r.revision, r.state) for r in history] == [
        (1, "complete"),
        (2, "complete"),
    ] * components
    return seen.seen


async def test_a_reconcile_reads_and_writes_its_rollouts_once_whatever_its_size(
    store: Database,
) -> None:
    await _apply(store, documents.org("acme"))
    one = await _reconcile_statements(store, "small", components=1)
    three = await _reconcile_statements(store, "large", components=3)
    # A look (the revisions, read outside the write lock: it finds revisions to
    # start), one read in the write transaction, the choice written once (a revision
    # started per component, the history pruned), the step's outcome written once
    # (each ended): as many statements for three components as for one, on rollouts
    # and overall.
    on_rollouts = [s for s in one if re.search(r"\brollouts\b", s)]
    verbs = [s.split(None, 1)[0].upper() for s in on_rollouts]
    assert verbs == ["SELECT", "SELECT", "INSERT", "DELETE", "UPDATE"], on_rollouts
    assert [s for s in three if re.search(r"\brollouts\b", s)] == on_rollouts
    assert len(three) == len(one), (one, three)


async def test_a_reconcile_with_nothing_to_do_takes_no_write_transaction(
    store: Database,
) -> None:
    """A report or a resync that changes nothing is the common case at fleet size:
    decided on reads, it never queues for the write lock (SQLite's one writer)."""
    await _apply(store, documents.org("acme"), _stack("s", replicas=0), _tenant("t1", stack="s"))
    controller = TenantController(store, NodesRuntime(store), clock=lambda: NOW)
    await controller.reconcile("t1")  # starts and completes the first revision
    await controller.reconcile("t1")  # and says so in the status
    writes = 0
    real_write = store.write

    def counted() -> Any:
        nonlocal writes
        writes += 1
        return real_write()

    store.write = counted  # type: ignore[method-assign]
    try:
        with _statements() as seen:
            await controller.reconcile("t1")
    finally:
        store.write = real_write  # type: ignore[method-assign]
    assert writes == 0
    verbs = {s.split(None, 1)[0].upper() for s in seen.seen}
    assert not verbs & {"INSERT", "UPDATE", "DELETE"}, seen.seen
