"""Group commit for verified deliveries: many deliveries, one durable transaction.

The webhook endpoint (api/routes/webhooks.py) hands each verified, routed delivery to
`Intake.submit` and answers the sender only with what `submit` returns, which it
returns only after the transaction holding the delivery committed. One task per
server process (started and drained by the API server's lifespan, api/app.py) takes
whatever deliveries are waiting, lets the event loop turn for as long as each turn
brings more (the requests being read right now), up to `max_batch`, and writes, in
one transaction (`Database.write_sync`), their events (`store.events.record_many`:
replays found in one query, new events in one insert), the agent run each new
routed event starts (`store.agent_runs`) and an audit row per delivery. Batches grow
with the load and no delivery waits for a timer. A batch goes through
`Database.write_batch`: on Postgres its replay lookup and then one statement holding
every insert (two round trips, where a transaction took eight, each waiting for a
turn of the busy loop); a delivery stored meanwhile by another replica makes that
statement fail on the unique constraints, and the batch is retried one by one.

On Postgres up to `POSTGRES_IN_FLIGHT` batches commit at once, each on a connection
of its own: a commit waits for the WAL's flush with the loop idle, and commits that
wait together share one flush. A batch forms while every slot is busy.

Invariants: a delivery's `Stored` is returned only after its rows committed, so an
acknowledged event and its run survive a kill the moment after; a failed batch (a
row another replica inserted meanwhile, a store error) is retried one delivery per
transaction, so one bad delivery fails alone; a delivery whose sender went away is
still written (its retry then answers duplicate). `drain` writes what was submitted
before it returns; `submit` refuses afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from armillary import metrics
from armillary.errors import TemporaryError
from armillary.store import agent_runs, audit, events
from armillary.store.database import Database, SyncTx

log = logging.getLogger("armillary.webhooks")

POSTGRES_IN_FLIGHT = 4  # batches committing at once on Postgres
AGENT_COMPONENT = "agent"
"""The component of the routed tenant's stack that a routed event's run calls."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """A verified delivery and what its audit row says of the request."""

    delivery: events.Delivery
    claimants: tuple[str, ...]  # every tenant listing the key (more than one: ambiguous)
    path: str
    client: str | None
    request_id: str | None
    max_attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """What was committed for an item: its event (or the earlier one it repeats), and
    the run it started."""

    id: str
    duplicate: bool
    run: str | None


class Closed(TemporaryError):
    """The intake is draining: the server is stopping."""


class Intake:
    """The group-commit writer of one server process."""

    def __init__(self, db: Database, *, max_batch: int = 256, in_flight: int | None = None) -> None:
        self._db = db
        self._max_batch = max_batch
        self._waiting: asyncio.Queue[tuple[Item, asyncio.Future[Stored]]] = asyncio.Queue()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        # Batches committing at once. SQLite has one writer, and its commit does not
        # wait on the disk: one. On Postgres a commit waits for the WAL's flush, the
        # loop idle meanwhile; concurrent commits share flushes (group commit).
        if in_flight is None:
            in_flight = POSTGRES_IN_FLIGHT if db.dialect == "postgresql" else 1
        self._slots = asyncio.Semaphore(in_flight)
        self._commits: set[asyncio.Task[None]] = set()
        self._inflight: dict[int, list[tuple[Item, asyncio.Future[Stored]]]] = {}
        self.batches = 0  # committed transactions, for the benchmark and tests
        self.items = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-intake")

    async def submit(self, item: Item) -> Stored:
        """Commit `item` with whatever else is waiting; its outcome once committed."""
        if self._closed or self._task is None:
            raise Closed("the server is stopping; deliver again")
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._waiting.put_nowait((item, done))
        # A sender that goes away cancels `done`, not its item: the batch still writes it
        # (and skips the answer).
        return await done

    async def drain(self) -> None:
        """Refuse new items, write the waiting ones, stop."""
        self._closed = True
        if self._task is None:
            return
        self._waiting.put_nowait(_STOP)
        await self._task

    async def _run(self) -> None:
        try:
            while True:
                # A free slot first: what arrives while every slot commits joins the
                # next batch, so batches grow with the load.
                await self._slots.acquire()
                batch = [await self._waiting.get()]
                while len(batch) < self._max_batch:
                    if self._waiting.empty():
                        # Let the requests being read right now join this batch: one turn
                        # of the loop at a time, for as long as each turn brings more.
                        await asyncio.sleep(0)
                        if self._waiting.empty():
                            break
                    batch.append(self._waiting.get_nowait())
                pending = [entry for entry in batch if entry is not _STOP]
                if pending:
                    commit = asyncio.create_task(self._commit_in_slot(pending))
                    self._commits.add(commit)
                    commit.add_done_callback(self._commits.discard)
                else:
                    self._slots.release()
                if len(pending) < len(batch):  # nothing is queued after the stop
                    await asyncio.gather(*self._commits)
                    return
        finally:  # cancelled: nobody waits for ever
            self._closed = True
            for commit in list(self._commits):
                commit.cancel()
            left = [entry for batch in self._inflight.values() for entry in batch]
            while not self._waiting.empty():
                left.append(self._waiting.get_nowait())
            for entry in left:
                if entry is not _STOP and not entry[1].done():
                    entry[1].set_exception(Closed("the server is stopping; deliver again"))

    async def _commit_in_slot(self, batch: list[tuple[Item, asyncio.Future[Stored]]]) -> None:
        key = id(batch)
        self._inflight[key] = batch
        try:
            await self._commit(batch)
        finally:
            del self._inflight[key]
            self._slots.release()

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Stored]]]) -> None:
        items = [item for item, _ in batch]
        began = time.perf_counter()
        try:
            stored = await self._db.write_batch(lambda conn: _write(conn, items))
        except Exception:
            # One by one, each with its own savepoint: a delivery committed meanwhile by
            # another replica is then a duplicate, and a bad one fails alone.
            log.warning("a batch of %d deliveries failed; writing them one by one", len(batch))
            for entry in batch:
                await self._one(*entry)
            return
        metrics.INTAKE_COMMIT.observe(time.perf_counter() - began)
        metrics.INTAKE_BATCH_SIZE.observe(len(batch))
        self.batches += 1
        self.items += len(batch)
        for (_, done), outcome in zip(batch, stored, strict=True):
            if not done.done():
                done.set_result(outcome)

    async def _one(self, item: Item, done: asyncio.Future[Stored]) -> None:
        try:
            (outcome,) = await self._db.write_sync(lambda conn: _write(conn, [item], one=True))
        except Exception:
            _fail(done)
            return
        self.batches += 1
        self.items += 1
        if not done.done():
            done.set_result(outcome)


_STOP: Any = object()


def _fail(done: asyncio.Future[Stored]) -> None:
    log.exception("a delivery could not be stored")
    if not done.done():
        done.set_exception(TemporaryError("the event could not be stored; deliver again"))


def _write(conn: SyncTx, items: list[Item], *, one: bool = False) -> list[Stored]:
    """The events of `items`, the runs of the new routed ones and every item's audit
    row, on `conn`. `one`: a single item, whose insert may meet a row committed
    meanwhile (then it is that row's duplicate)."""
    if one:
        recorded = [events.record(conn, item.delivery) for item in items]
    else:
        recorded = events.record_many(conn, [item.delivery for item in items])
    now = dt.datetime.now(dt.UTC)
    starts = [
        (n, item)
        for n, (item, rec) in enumerate(zip(items, recorded, strict=True))
        if item.delivery.tenant is not None and not rec.duplicate
    ]
    requests = [
        agent_runs.Request(
            tenant=item.delivery.tenant,
            component=AGENT_COMPONENT,
            input={},
            requested_by=f"webhook:{item.delivery.source}",
            max_attempts=item.max_attempts,
            event_id=recorded[n].id,
        )
        for n, item in starts
        if item.delivery.tenant is not None  # for the type checker: filtered above
    ]
    run_ids = agent_runs.create_many(conn, requests, now=now)
    runs = {n: run_id for (n, _), run_id in zip(starts, run_ids, strict=True)}
    audit.record_many(
        conn,
        [
            _entry(item, rec, runs.get(n))
            for n, (item, rec) in enumerate(zip(items, recorded, strict=True))
        ],
    )
    return [
        Stored(id=rec.id, duplicate=rec.duplicate, run=runs.get(n))
        for n, rec in enumerate(recorded)
    ]


def _entry(item: Item, recorded: events.Recorded, run: str | None) -> audit.Entry:
    delivery = item.delivery
    detail: dict[str, Any] = {
        "event": recorded.id,
        "deliveryId": delivery.delivery_id,
        "eventType": delivery.event_type,
        "routingKey": delivery.routing_key,
    }
    if run is not None:
        detail["run"] = run
    if len(item.claimants) > 1:
        detail["ambiguous"] = list(item.claimants)
    return audit.Entry(
        at=delivery.received_at,
        verb="receive",
        outcome="duplicate" if recorded.duplicate else delivery.state,
        principal=f"webhook:{delivery.source}",
        principal_kind="webhook",
        tenant=delivery.tenant,
        path=item.path,
        kind="WebhookSource",
        name=delivery.source,
        status=200 if recorded.duplicate else 202,
        source=item.client,
        request_id=item.request_id,
        detail=detail,
    )
