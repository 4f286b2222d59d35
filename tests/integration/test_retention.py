"""Retention on SQLite and Postgres: finished history past its age or outside the newest
N goes, newer rows, unfinished runs and the events of kept runs stay; a long backlog goes
in batches of its own transactions while webhook intake keeps committing; a real
server removes seeded old events while its webhook endpoint answers 202, and shows
the policies and counts through `GET /api/v1/retention` and `armillary retention`.
Time is driven by writing old timestamps and by an injected clock, never by sleeping."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from armillary.api.app import create_app
from armillary.config import Settings
from armillary.control import retention
from armillary.ingress import intake
from armillary.store import bulk, events
from armillary.store import retention as store_retention
from armillary.store.database import Database
from armillary.store.tables import (
    agent_runs,
    audit_log,
    provision_runs,
    provision_steps,
    schedule_runs,
    schedule_states,
)
from armillary.store.tables import events as events_table
from tests.support import documents, tls
from tests.support.api import apply
from tests.support.cli import Cli
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
DAY_S = 86400.0


def _ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


def _event(event_id: str, *, days: float, source: str = "gh") -> dict[str, Any]:
    return {
        "id": event_id,
        "source": source,
        "delivery_id": event_id,
        "replay_hash": None,
        "body_sha256": "0" * 64,
        "received_at": _ago(days),
        "event_type": "push",
        "tenant": None,
        "routing_key": None,
        "state": "unrouted",
        "content_type": "application/json",
        "headers": {},
        "body_encoding": "utf-8",
        "body": "{}",
    }


def _agent_run(run_id: str, *, days: float, state: str, event_id: str | None) -> dict[str, Any]:
    return {
        "id": run_id,
        "tenant": "t",
        "component": "agent",
        "event_id": event_id,
        "input": {},
        "requested_by": "webhook:gh",
        "state": state,
        "attempts": 1,
        "max_attempts": 3,
        "next_attempt_at": _ago(days),
        "created_at": _ago(days),
        "history": [],
    }


def _provision_run(run_id: str, *, days: float, state: str) -> dict[str, Any]:
    return {
        "id": run_id,
        "action": "provision",
        "org": "o",
        "tenant": run_id,
        "request": {},
        "state": state,
        "created_at": _ago(days),
    }


def _schedule_run(run_id: str, *, days: float, state: str) -> dict[str, Any]:
    return {
        "id": run_id,
        "schedule": "nightly",
        "tenant": "t",
        "component": "job",
        "trigger": "schedule",
        "scheduled_at": _ago(days),
        "state": state,
        "created_at": _ago(days),
    }


def _audit(row_id: str, *, days: float) -> dict[str, Any]:
    return {"at": _ago(days), "verb": "POST", "outcome": row_id, "detail": {}}


async def _seed(db: Database, table: Any, rows: Iterable[dict[str, Any]]) -> None:
    async with db.write() as conn:
        await conn.execute(insert(table), list(rows))


async def _schedule_state(db: Database) -> None:
    await _seed(
        db,
        schedule_states,
        [
            {
                "schedule": "nightly",
                "tenant": "t",
                "owner_uid": "u",
                "clock_hash": "h",
                "version": 1,
                "handled_at": NOW,
                "status": {},
                "updated_at": NOW,
            }
        ],
    )


async def _ids(conn: AsyncConnection, column: Any) -> set[str]:
    return {str(v) for v in (await conn.execute(select(column))).scalars()}


def _pass(db: Database, policies: dict[str, store_retention.Policy], **kw: Any) -> Any:
    return retention.Retention(db, policies, interval_s=3600, clock=lambda: NOW, **kw).run_once()


async def test_rows_past_the_age_go_and_newer_ones_stay(store: Database) -> None:
    await _schedule_state(store)
    ages = {"old": 40.0, "older": 400.0, "new": 5.0}
    await _seed(store, events_table, [_event(f"ev-{n}", days=d) for n, d in ages.items()])
    await _seed(
        store,
        agent_runs,
        [_agent_run(f"ar-{n}", days=d, state="succeeded", event_id=None) for n, d in ages.items()],
    )
    await _seed(
        store,
        provision_runs,
        [_provision_run(f"pr-{n}", days=d, state="rolled-back") for n, d in ages.items()],
    )
    await _seed(
        store,
        provision_steps,
        [
            {"run_id": f"pr-{n}", "position": 0, "name": "s", "state": "succeeded", "detail": {}}
            for n in ages
        ],
    )
    await _seed(
        store,
        schedule_runs,
        [_schedule_run(f"sr-{n}", days=d, state="failed") for n, d in ages.items()],
    )
    await _seed(store, audit_log, [_audit(f"au-{n}", days=d) for n, d in ages.items()])

    month = store_retention.Policy(max_age_s=30 * DAY_S)
    done = await _pass(store, dict.fromkeys(store_retention.KINDS, month))

    assert done.removed == dict.fromkeys(store_retention.KINDS, 2)
    async with store.read() as conn:
        assert await _ids(conn, events_table.c.id) == {"ev-new"}
        assert await _ids(conn, agent_runs.c.id) == {"ar-new"}
        assert await _ids(conn, provision_runs.c.id) == {"pr-new"}
        assert await _ids(conn, provision_steps.c.run_id) == {"pr-new"}  # steps go too
        assert await _ids(conn, schedule_runs.c.id) == {"sr-new"}
        assert await _ids(conn, audit_log.c.outcome) == {"au-new"}
    # Without a policy, nothing goes, however old.
    assert sum((await _pass(store, {})).removed.values()) == 0


async def test_the_count_cap_keeps_the_newest(store: Database) -> None:
    await _seed(store, events_table, [_event(f"ev-{d:02}", days=d) for d in range(10)])
    await _seed(store, audit_log, [_audit(f"au-{d:02}", days=d) for d in range(10)])
    cap = store_retention.Policy(max_count=4)

    done = await _pass(store, {"events": cap, "audit": cap}, batch=3)

    assert (done.removed["events"], done.batches["events"]) == (6, 2)
    async with store.read() as conn:
        assert await _ids(conn, events_table.c.id) == {f"ev-{d:02}" for d in range(4)}
        assert await _ids(conn, audit_log.c.outcome) == {f"au-{d:02}" for d in range(4)}
        kept = await store_retention.kept(conn, "events")
    assert kept.count == 4 and kept.oldest == _ago(3)


async def test_unfinished_runs_and_the_events_they_serve_are_kept(store: Database) -> None:
    await _schedule_state(store)
    agent_states = ["queued", "running", "failed", "succeeded", "dead"]
    await _seed(store, events_table, [_event(f"ev-{s}", days=100) for s in agent_states])
    await _seed(
        store,
        agent_runs,
        [_agent_run(f"ar-{s}", days=100, state=s, event_id=f"ev-{s}") for s in agent_states],
    )
    await _seed(
        store,
        provision_runs,
        [_provision_run(f"pr-{s}", days=100, state=s) for s in ["pending", "running", "failed"]],
    )
    await _seed(
        store,
        schedule_runs,
        [
            _schedule_run(f"sr-{s}", days=100 + i, state=s)
            for i, s in enumerate(["pending", "running", "succeeded", "stopped"])
        ],
    )
    # Past both limits: a day old at most, and one row per kind.
    policy = store_retention.Policy(max_age_s=DAY_S, max_count=1)

    await _pass(store, dict.fromkeys(store_retention.KINDS, policy))

    unfinished = ["queued", "running", "failed"]
    async with store.read() as conn:
        assert await _ids(conn, events_table.c.id) == {f"ev-{s}" for s in unfinished}
        assert await _ids(conn, agent_runs.c.id) == {f"ar-{s}" for s in unfinished}
        assert await _ids(conn, provision_runs.c.id) == {"pr-pending", "pr-running"}
        assert await _ids(conn, schedule_runs.c.id) == {"sr-pending", "sr-running"}


async def test_an_event_stays_while_its_run_does(store: Database) -> None:
    await _seed(store, events_table, [_event(f"ev-{s}", days=100) for s in ("dead", "none")])
    await _seed(
        store, agent_runs, [_agent_run("ar-dead", days=100, state="dead", event_id="ev-dead")]
    )
    events_only = {"events": store_retention.Policy(max_age_s=DAY_S)}

    await _pass(store, events_only)
    async with store.read() as conn:  # a dead run may be retried: its call needs the event
        assert await _ids(conn, events_table.c.id) == {"ev-dead"}

    await _pass(store, {**events_only, "agent-runs": store_retention.Policy(max_age_s=DAY_S)})
    async with store.read() as conn:  # the run went first, and its event in the same pass
        assert await _ids(conn, events_table.c.id) == set()
        assert await _ids(conn, agent_runs.c.id) == set()


def _delivery() -> intake.Item:
    body = json.dumps({"n": str(uuid.uuid4())}).encode()
    digest = hashlib.sha256(body).hexdigest()
    delivery = events.Delivery(
        source="live",
        delivery_id=str(uuid.uuid4()),
        replay_hash=digest,
        body_sha256=digest,
        received_at=dt.datetime.now(dt.UTC),
        event_type="push",
        tenant=None,
        routing_key=None,
        state="unrouted",
        content_type="application/json",
        headers={},
        body=body,
    )
    return intake.Item(
        delivery=delivery, claimants=(), path="/webhooks/live", client=None, request_id=None,
        max_attempts=3,
    )  # fmt: skip


async def test_a_backlog_goes_in_batches_while_intake_keeps_committing(store: Database) -> None:
    backlog = 3_000
    async with store.write() as conn:
        await conn.run_sync(
            lambda sync: bulk.insert_rows(
                sync, events_table, [_event(f"old-{i}", days=60) for i in range(backlog)]
            )
        )
    taken = intake.Intake(store)
    taken.start()
    # One delivery first, so that what is measured below is the turn-taking, not the
    # intake's first commit (on Postgres it opens and prepares its own connection).
    first = (await taken.submit(_delivery())).id
    loop = retention.Retention(
        store,
        {"events": store_retention.Policy(max_age_s=30 * DAY_S)},
        interval_s=3600,
        batch=500,
    )
    cleaning = asyncio.ensure_future(loop.run_once())
    seen_midway: list[int] = []  # old events left when a delivery had committed
    accepted: list[str] = [first]

    async def deliver() -> None:
        while not cleaning.done():
            accepted.append((await taken.submit(_delivery())).id)
            async with store.read() as conn:
                left = (
                    await conn.execute(select(func.count()).where(events_table.c.source == "gh"))
                ).scalar_one()
            seen_midway.append(int(left))

    try:
        await asyncio.gather(*(deliver() for _ in range(4)))
        done = await cleaning
    finally:
        await taken.drain()

    assert (done.removed["events"], done.batches["events"]) == (backlog, backlog // 500)
    # Deliveries committed between the batches, not only before or after the whole pass.
    assert any(0 < left < backlog for left in seen_midway), seen_midway
    async with store.read() as conn:
        assert await _ids(conn, events_table.c.id) == set(accepted)


async def test_settings_give_the_policies() -> None:
    default = retention.policies(Settings())
    assert default["events"] == store_retention.Policy(max_age_s=30 * DAY_S)
    assert default["audit"] == store_retention.Policy(max_age_s=90 * DAY_S)
    older_name = retention.policies(Settings(audit_retention_days=7))
    assert older_name["audit"].max_age_s == 7 * DAY_S
    newer = Settings(
        audit_retention_days=7,
        retention_audit_days=0,
        retention_audit_max=1000,
        retention_events_days=0,
        retention_events_max=50,
    )
    assert retention.policies(newer)["audit"] == store_retention.Policy(max_count=1000)
    assert retention.policies(newer)["events"] == store_retention.Policy(max_count=50)


async def test_a_server_with_retention_off_runs_no_pass(tmp_path: Path) -> None:
    for enabled in (True, False):
        app = create_app(Settings(home=tmp_path / str(enabled), retention_enabled=enabled))
        async with app.router.lifespan_context(app):
            assert ("retention" in app.state.background) is enabled


# A real server: its own retention pass, its webhook endpoint, its route and the CLI.

SERVER_ENV = {
    "ARMILLARY_AUDIT_CLEANUP_INTERVAL_S": "0.2",
    "ARMILLARY_RETENTION_BATCH": "500",
    "ARMILLARY_RETENTION_EVENTS_DAYS": "1",
    "ARMILLARY_RETENTION_AGENT_RUNS_MAX": "1000",
    "ARMILLARY_AUDIT_RETENTION_DAYS": "7",  # the older name still works
}
SECRET_VALUE = "retention-signing"


def _signed_push(http: httpx.Client, source: str) -> httpx.Response:
    body = json.dumps({"repository": {"full_name": "nobody/none"}, "n": uuid.uuid4().hex})
    digest = hmac.new(SECRET_VALUE.encode(), body.encode(), hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={digest}",
    }
    return http.post(f"/webhooks/{source}", content=body, headers=headers)


def _report(server: ServerProcess) -> dict[str, Any]:
    with server.client(token="admin") as http:
        response = http.get("/api/v1/retention")
    assert response.status_code == 200, response.text
    return {k["kind"]: k for k in response.json()["kinds"]}


async def _seed_server(url: str, rows: list[dict[str, Any]]) -> None:
    db = await Database.open(url)
    try:
        async with db.write() as conn:
            await conn.run_sync(lambda sync: bulk.insert_rows(sync, events_table, rows))
    finally:
        await db.close()


async def _count_server(url: str, source: str) -> int:
    db = await Database.open(url)
    try:
        async with db.read() as conn:
            query = select(func.count()).where(events_table.c.source == source)
            return int((await conn.execute(query)).scalar_one())
    finally:
        await db.close()


def test_a_server_expires_old_events_while_deliveries_are_accepted(
    server: ServerProcess, cli: Cli
) -> None:
    mark = uuid.uuid4().hex[:6]
    secret, source = f"ret-{mark}", f"ret-{mark}"
    apply(
        server,
        {
            "apiVersion": "armillary.dev/v1",
            "kind": "Secret",
            "metadata": {"name": secret},
            "spec": {"data": {"signing": SECRET_VALUE}},
        },
        documents.webhook_source(source, secret),
    )
    answers: list[int] = []
    stop = threading.Event()

    def keep_delivering() -> None:
        with httpx.Client(base_url=server.url, timeout=30, verify=tls.CONTEXT) as http:
            while not stop.is_set() or not answers:
                answers.append(_signed_push(http, source).status_code)

    sender = threading.Thread(target=keep_delivering)
    sender.start()
    try:
        old = [_event(f"old-{mark}-{i}", days=60, source=f"old-{mark}") for i in range(3_000)]
        asyncio.run(_seed_server(server.store_url, old))
        events_row = wait_for(
            lambda: (r := _report(server)["events"])["removedSinceStart"] >= 3_000 and r,
            what="the seeded old events to be removed",
        )
    finally:
        stop.set()
        sender.join()
    assert events_row["removedSinceStart"] == 3_000
    assert events_row["batchesSinceStart"] == 6  # 500 per transaction
    assert set(answers) == {202} and len(answers) > 0
    assert asyncio.run(_count_server(server.store_url, source)) == len(answers)  # all stored

    report = _report(server)
    assert report["events"]["maxAgeS"] == DAY_S and report["events"]["maxCount"] is None
    assert report["agent-runs"]["maxCount"] == 1000
    assert report["audit"]["maxAgeS"] == 7 * DAY_S
    assert report["audit"]["kept"] >= 1 and report["audit"]["oldest"] is not None

    code, out, err = cli("retention")
    assert code == 0, err
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["KIND"][:2] == ["KIND", "MAX"]
    assert lines["events"][1:3] == ["1d", "-"]
    assert lines["agent-runs"][1:3] == ["30d", "1000"]
    assert lines["audit"][1] == "7d"
    code, out, err = cli("retention", "-o", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["enabled"] is True and document["batch"] == 500
    assert [k["kind"] for k in document["kinds"]] == list(store_retention.KINDS)
