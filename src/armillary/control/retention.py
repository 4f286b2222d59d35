"""The retention loop: removes finished history past its policy, a batch at a time.

Started by the app's lifespan (task `retention`) when `retention_enabled` is on. A pass
visits every kind in `store.retention.KINDS` and removes up to `batch` rows per write
transaction, yielding to the event loop between transactions: on SQLite there is one
writer, and webhook intake (`Database.write_sync`) waits for the lock a batch holds,
so a batch is kept small (500 rows by default, a few milliseconds) and intake's
writes take turns with the batches instead of waiting for the whole backlog
(`asyncio.Lock` hands the lock to waiters in order).

Run by one server: the loop is a leader task (`api.leadership`), so of several
replicas on Postgres only the leader runs it. Were two to race anyway (a failover's
moment), it stays safe — each batch picks rows and deletes them by key in one
transaction, so each row is removed once between them.

What the last pass removed (`last`), and every pass since the server started
(`removed_total`, `batches_total`), is shown by `GET /api/v1/retention`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from armillary.config import Settings
from armillary.store import retention
from armillary.store.database import Database

log = logging.getLogger("armillary.retention")

BATCH = 500
"""Rows removed per write transaction: small enough that ingress waits only briefly."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pass:
    """What one retention pass did: when it ran, and per kind the rows removed and the
    write transactions it took to remove them."""

    at: dt.datetime
    removed: Mapping[str, int] = field(default_factory=dict)
    batches: Mapping[str, int] = field(default_factory=dict)


def policies(settings: Settings) -> dict[str, retention.Policy]:
    """Each kind's policy from the settings; a limit of 0 is no limit. The audit log's
    age is `retention_audit_days`, or the older `audit_retention_days` when unset."""
    audit_days = settings.retention_audit_days
    if audit_days is None:
        audit_days = settings.audit_retention_days
    limits = {
        "events": (settings.retention_events_days, settings.retention_events_max),
        "agent-runs": (settings.retention_agent_runs_days, settings.retention_agent_runs_max),
        "provisioning-runs": (
            settings.retention_provisioning_runs_days,
            settings.retention_provisioning_runs_max,
        ),
        "schedule-runs": (
            settings.retention_schedule_runs_days,
            settings.retention_schedule_runs_max,
        ),
        "audit": (audit_days, settings.retention_audit_max),
    }
    return {
        kind: retention.Policy(max_age_s=days * 86400 or None, max_count=count or None)
        for kind, (days, count) in limits.items()
    }


class Retention:
    """The per-kind policies and the loop applying them to one store."""

    def __init__(
        self,
        db: Database,
        policies: Mapping[str, retention.Policy],
        *,
        interval_s: float,
        batch: int = BATCH,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._db = db
        self.policies = dict(policies)
        self.interval_s = interval_s
        self.batch = batch
        self._clock = clock
        self.last: Pass | None = None
        self.removed_total: dict[str, int] = dict.fromkeys(retention.KINDS, 0)
        self.batches_total: dict[str, int] = dict.fromkeys(retention.KINDS, 0)

    async def run_once(self) -> Pass:
        """One pass over every kind, each batch in its own write transaction."""
        now = self._clock()
        removed: dict[str, int] = {}
        batches: dict[str, int] = {}
        for kind in retention.KINDS:
            policy = self.policies.get(kind, retention.Policy())
            removed[kind] = batches[kind] = 0
            while True:
                async with self._db.write() as conn:
                    gone = await retention.expire(conn, kind, policy, now=now, batch=self.batch)
                if gone:
                    batches[kind] += 1
                    removed[kind] += gone
                    self.batches_total[kind] += 1
                    self.removed_total[kind] += gone
                await asyncio.sleep(0)  # let intake's waiting writes in between batches
                if gone < self.batch:
                    break
        self.last = Pass(at=now, removed=removed, batches=batches)
        if any(removed.values()):
            log.info(
                "retention removed %s",
                ", ".join(f"{n} {kind}" for kind, n in removed.items() if n),
            )
        return self.last

    async def run(self) -> None:
        """`run_once` now and every `interval_s`, until cancelled."""
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("retention pass failed; trying again in %.0fs", self.interval_s)
            await asyncio.sleep(self.interval_s)
