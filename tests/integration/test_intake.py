"""The webhook intake and its bulk writes on a real store, SQLite and Postgres, with no
server: many deliveries committed together, replays found inside a batch and across
batches, a bad delivery failing alone (its event not kept when its run could not be
written: a batch is all or none), a drain writing what was submitted, and rows written
in bulk, or in one statement by `write_batch`, reading back as rows written with Core."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import uuid
from typing import Any

import pytest
from sqlalchemy import insert, select

from armillary.errors import TemporaryError
from armillary.ingress import intake
from armillary.store import audit, bulk, events
from armillary.store.database import Database
from armillary.store.tables import agent_runs as agent_runs_table
from armillary.store.tables import audit_log
from armillary.store.tables import events as events_table


def item(*, delivery_id: str | None = None, tenant: str | None = "t", **change: Any) -> intake.Item:
    body = f'{{"n": "{uuid.uuid4()}"}}'.encode()
    digest = hashlib.sha256(body).hexdigest()
    values: dict[str, Any] = {
        "source": "gh",
        "delivery_id": delivery_id or str(uuid.uuid4()),
        "replay_hash": digest,
        "body_sha256": digest,
        "received_at": dt.datetime.now(dt.UTC),
        "event_type": "push",
        "tenant": tenant,
        "routing_key": "acme/app",
        "state": "routed" if tenant else "unrouted",
        "content_type": "application/json",
        "headers": {"x-github-event": "push"},
        "body": body,
        **change,
    }
    return intake.Item(
        delivery=events.Delivery(**values),
        claimants=(tenant,) if tenant else (),
        path="/webhooks/gh",
        client="127.0.0.1",
        request_id=uuid.uuid4().hex,
        max_attempts=3,
    )


async def counts(db: Database) -> tuple[int, int, int]:
    async with db.read() as conn:
        found = [
            len((await conn.execute(select(table.c.id))).all())
            for table in (events_table, agent_runs_table, audit_log)
        ]
    return found[0], found[1], found[2]


async def test_a_crowd_of_deliveries_is_committed_in_few_transactions(store: Database) -> None:
    taken = intake.Intake(store)
    taken.start()
    try:
        outcomes = await asyncio.gather(*(taken.submit(item()) for _ in range(50)))
    finally:
        await taken.drain()
    assert len({o.id for o in outcomes}) == 50 and not any(o.duplicate for o in outcomes)
    assert all(o.run is not None for o in outcomes)
    assert taken.items == 50 and taken.batches < 50  # submitted together, written together
    assert await counts(store) == (50, 50, 50)


async def test_replays_inside_a_batch_and_across_batches_are_duplicates(store: Database) -> None:
    taken = intake.Intake(store)
    taken.start()
    try:
        first, again, unrouted = await asyncio.gather(
            taken.submit(item(delivery_id="d-1")),
            taken.submit(item(delivery_id="d-1")),  # same id, same batch
            taken.submit(item(tenant=None)),
        )
        later = await taken.submit(item(delivery_id="d-1"))  # a batch of its own
    finally:
        await taken.drain()
    assert not first.duplicate and first.run is not None
    assert again.duplicate and again.id == first.id and again.run is None
    assert later.duplicate and later.id == first.id
    assert not unrouted.duplicate and unrouted.run is None  # stored, starts no run
    # two events; one run; an audit row for every delivery, duplicates included
    assert await counts(store) == (2, 1, 4)


async def test_a_bad_delivery_fails_alone_and_the_rest_of_its_batch_is_stored(
    store: Database,
) -> None:
    taken = intake.Intake(store)
    taken.start()
    try:
        outcomes = await asyncio.gather(
            taken.submit(item()),
            taken.submit(item(state=None)),  # NOT NULL: the batch insert fails
            taken.submit(item()),
            return_exceptions=True,
        )
    finally:
        await taken.drain()
    assert isinstance(outcomes[1], TemporaryError)
    assert isinstance(outcomes[0], intake.Stored) and isinstance(outcomes[2], intake.Stored)
    assert await counts(store) == (2, 2, 2)


async def test_drain_writes_what_was_submitted_and_then_refuses(store: Database) -> None:
    taken = intake.Intake(store)
    taken.start()
    waiting = [asyncio.ensure_future(taken.submit(item())) for _ in range(10)]
    await asyncio.sleep(0)  # submitted, not yet written
    await taken.drain()
    assert all(not outcome.duplicate for outcome in await asyncio.gather(*waiting))
    with pytest.raises(intake.Closed):
        await taken.submit(item())
    assert await counts(store) == (10, 10, 10)


async def test_rows_written_in_bulk_read_back_as_rows_written_with_core(store: Database) -> None:
    at = dt.datetime(2026, 12, 2, 13, 14, 15, 161718, tzinfo=dt.UTC)
    entry = audit.Entry(
        at=at,
        verb="receive",
        outcome="routed",
        principal="webhook:gh",
        principal_kind="webhook",
        tenant="t",
        status=202,
        detail={"event": "e", "nested": {"list": [1, "two", None]}, "text": "ünï"},
    )
    values = audit._values(entry)

    def write(conn: Any) -> None:
        bulk.insert_rows(conn, audit_log, [values])
        conn.execute(insert(audit_log), [values])

    await store.write_sync(write)
    async with store.read() as conn:
        rows = (await conn.execute(select(audit_log).order_by(audit_log.c.id))).all()
    assert len(rows) == 2
    by_bulk, by_core = (dict(row._mapping) for row in rows)
    by_bulk.pop("id"), by_core.pop("id")
    assert by_bulk == by_core
    assert by_bulk["detail"] == entry.detail
    assert by_bulk["at"].replace(tzinfo=dt.UTC) == at


async def test_a_batch_is_written_all_or_none_and_a_failure_is_retried_one_by_one(
    store: Database,
) -> None:
    # Its event would insert; its run cannot (NOT NULL): on Postgres the batch's one
    # statement fails whole, and written one by one only that delivery fails.
    bad = dataclasses.replace(item(), max_attempts=None)  # type: ignore[arg-type]
    taken = intake.Intake(store)
    taken.start()
    try:
        outcomes = await asyncio.gather(
            taken.submit(item()), taken.submit(bad), taken.submit(item()), return_exceptions=True
        )
    finally:
        await taken.drain()
    assert isinstance(outcomes[1], TemporaryError)
    assert await counts(store) == (2, 2, 2)  # nothing of the bad delivery, not its event


async def test_rows_of_a_batch_written_in_one_statement_read_back_as_core_rows(
    store: Database,
) -> None:
    entry = audit.Entry(
        at=dt.datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=dt.UTC),
        verb="receive",
        outcome="routed",
        tenant="t",
        status=202,
        detail={"event": "e", "nested": {"list": [1, "two", None]}, "text": "ünï"},
    )
    values = audit._values(entry)
    await store.write_batch(lambda conn: bulk.insert_rows(conn, audit_log, [values, values]))
    await store.write_sync(lambda conn: conn.execute(insert(audit_log), [values]))
    async with store.read() as conn:
        rows = (await conn.execute(select(audit_log).order_by(audit_log.c.id))).all()
    found = [dict(row._mapping) for row in rows]
    for row in found:
        row.pop("id")
    assert len(found) == 3 and found[0] == found[1] == found[2]


async def test_batches_committing_at_once_store_a_delivery_once(store: Database) -> None:
    # One delivery per batch, four batches at once: the same delivery in two of them
    # meets the other's row (on Postgres at the unique index, waiting for its commit)
    # and is answered as its duplicate.
    taken = intake.Intake(store, max_batch=1, in_flight=4)
    taken.start()
    try:
        outcomes = await asyncio.gather(
            taken.submit(item(delivery_id="same")),
            taken.submit(item(delivery_id="same")),
            *(taken.submit(item()) for _ in range(10)),
        )
    finally:
        await taken.drain()
    first, again = outcomes[0], outcomes[1]
    assert {first.duplicate, again.duplicate} == {False, True} and first.id == again.id
    assert taken.batches >= 12
    assert await counts(store) == (11, 11, 12)
