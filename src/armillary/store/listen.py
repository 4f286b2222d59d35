"""The other replicas' changes, into this replica's feed (Postgres only).

`Listener.run()` holds one dedicated asyncpg connection (outside SQLAlchemy's pool,
which may recycle or hand out its connections) that LISTENs on `notify.CHANNEL`, and
publishes each payload's changes into the local `Feed`, skipping those this replica
sent itself (it published them at its own commit). Postgres delivers notifications in
commit order, so the local feed sees them as the writers committed them.

If the connection fails (checked every `check_s`, or a notification that cannot be
read), it reconnects with capped backoff, and once listening again publishes one
`feed.RESYNC` change: whatever was committed meanwhile was not heard, so every
subscriber re-lists what it watches. `ready` is set once the first LISTEN is in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from armillary.store import feed, notify
from armillary.store.database import Database

log = logging.getLogger("armillary.store")

CHECK_S = 1.0
BACKOFF_MAX_S = 5.0


class Listener:
    def __init__(self, db: Database, *, check_s: float = CHECK_S) -> None:
        self._db = db
        self._check_s = check_s
        self.ready = asyncio.Event()
        self.received = 0  # changes published from other replicas (for metrics/tests)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        sender, changes = notify.decode(payload)
        if sender == self._db.sender:
            return  # published at our own commit already
        self.received += len(changes)
        self._db.feed.publish(changes)

    async def run(self) -> None:
        """Run until cancelled."""
        import asyncpg

        failures = 0
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(
                    self._db.dsn(),
                    timeout=10,
                    server_settings={"application_name": "armillary listener"},
                )
                await conn.add_listener(notify.CHANNEL, self._heard)
                if self.ready.is_set():  # a reconnect: what was sent meanwhile is lost
                    self._db.feed.publish([feed.Change(kind=feed.RESYNC, name="*")])
                self.ready.set()
                failures = 0
                while True:
                    await asyncio.sleep(self._check_s)
                    await asyncio.wait_for(conn.execute("SELECT 1"), timeout=self._check_s * 5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay_s = min(BACKOFF_MAX_S, 0.1 * 2**failures)
                log.warning("listening for other replicas' changes failed (%s); retry", exc)
                await asyncio.sleep(delay_s)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
