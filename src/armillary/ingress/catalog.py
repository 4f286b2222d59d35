"""What the webhook endpoint must know before it stores anything, held in memory:
every WebhookSource with its secrets' values, and every tenant's routing keys.

Used by the webhook endpoint (api/routes/webhooks.py) on every delivery; built and
closed by the API server's lifespan (api/app.py).

A delivery costs no read of the store: the catalog is read whole, in one read
transaction, the first time it is needed, and again after a WebhookSource, Secret or
Tenant changes through this server (the change feed, watched from construction until
`close`) or once it is older than
`max_age_s` (then read in the background while the old one still serves), the
bound, give or take one read, on how long a change made through another server
replica takes to reach this one.

Invariants: a delivery is checked against one snapshot (sources, secret values and
routing read together, never a mix of two reads); a change committed through this
server is seen by every delivery that starts after the commit; loads are
single-flight, however many deliveries wait; secret values live only in memory and
no log line holds one (a missing or unreadable secret is logged by name, once per
load).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from armillary.auth import secrets
from armillary.ingress import routing
from armillary.resources.webhook import WebhookSource, WebhookSourceSpec
from armillary.store import repository
from armillary.store.database import Database
from armillary.store.feed import RESYNC, Change

log = logging.getLogger("armillary.webhooks")

WATCHED = frozenset({"WebhookSource", "Secret", "Tenant", RESYNC})
"""The kinds whose change makes the next delivery read the catalog again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """A WebhookSource as the endpoint uses it: its spec and its secrets' values."""

    spec: WebhookSourceSpec
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Sources and routing as read together at `loaded_at` (monotonic seconds)."""

    sources: Mapping[str, Source]
    routes: routing.Index
    loaded_at: float
    generation: int


class Catalog:
    """The cached sources and routing of one server process."""

    def __init__(
        self,
        db: Database,
        vault: secrets.Vault,
        *,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._vault = vault
        self._max_age_s = max_age_s
        self._clock = clock
        self._generation = 0
        self._current: Snapshot | None = None
        self._loading = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None
        self._unwatch = db.feed.watch(self._changed)

    def close(self) -> None:
        self._unwatch()
        if self._refresh is not None:
            self._refresh.cancel()

    def _changed(self, event: Change) -> None:
        if event.kind in WATCHED:
            self.invalidate()

    def invalidate(self) -> None:
        """Forget the snapshot: the next delivery reads the store again."""
        self._generation += 1

    async def snapshot(self) -> Snapshot:
        """The snapshot to check a delivery against. After a change through this server,
        or with none held, it is read now (deliveries wait for it); one merely older than
        `max_age_s` is still used while a fresh one is read in the background, so a
        busy endpoint never stalls on the periodic read."""
        current = self._current
        if current is not None and current.generation == self._generation:
            if self._clock() - current.loaded_at >= self._max_age_s and not self._loading.locked():
                self._refresh = asyncio.create_task(self._background(), name="webhook-catalog")
            return current
        return await self._reload()

    async def _background(self) -> None:
        try:
            await self._reload()
        except Exception:  # the held snapshot goes on serving; the next delivery tries again
            log.exception("reading the webhook sources and routing failed")

    async def _reload(self) -> Snapshot:
        async with self._loading:
            current = self._current
            if current is not None and self._fresh(current):
                return current  # loaded by the delivery we waited behind
            current = await self._load()
            self._current = current
            return current

    def _fresh(self, snapshot: Snapshot) -> bool:
        return (
            snapshot.generation == self._generation
            and self._clock() - snapshot.loaded_at < self._max_age_s
        )

    async def _load(self) -> Snapshot:
        # Taken before reading: a change committed while we read invalidates this read.
        generation = self._generation
        loaded_at = self._clock()
        sources: dict[str, Source] = {}
        async with self._db.read() as conn:
            for stored in await repository.list_kind(conn, "WebhookSource"):
                try:
                    spec = WebhookSource.model_validate(stored.document()).spec
                except ValidationError as exc:  # stored before a stricter schema
                    log.error("webhook source %s is not valid and is skipped: %s", stored.name, exc)
                    continue
                refs = [(ref.name, ref.key) for ref in spec.secrets]
                keys, missing = await secrets.values_of(conn, self._vault, refs)
                if missing:  # names only: the values never reach a log
                    log.error(
                        "webhook %s: secret keys not found or unreadable: %s",
                        stored.name,
                        ", ".join(missing),
                    )
                sources[stored.name] = Source(spec=spec, keys=tuple(keys))
            tenants = await repository.list_kind(conn, "Tenant")
        table = {t.name: t.spec.get("routing", {}) for t in tenants}
        return Snapshot(
            sources=sources,
            routes=routing.Index(table),
            loaded_at=loaded_at,
            generation=generation,
        )
