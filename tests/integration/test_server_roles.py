"""What a server runs beside its API, from its settings: the leader (a SQLite server
always is one) runs the controllers and the retention loop (unless
ARMILLARY_RETENTION_ENABLED is false); the agent run worker only where
ARMILLARY_AGENT_RUN_WORKER is not false (an ingress replica queues runs for
another replica to work off). The real app and its lifespan, on SQLite, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from armillary.api.app import create_app
from armillary.config import Settings


@pytest.mark.parametrize("worker", [True, False])
async def test_the_agent_run_worker_runs_only_where_it_is_wanted(
    tmp_path: Path, worker: bool
) -> None:
    app = create_app(Settings(home=tmp_path, agent_run_worker=worker))
    async with app.router.lifespan_context(app):
        running = {name for name, task in app.state.background.items() if not task.done()}
    assert {
        "retention",
        "tenants",
        "schedules",
        "drains",
        "node-loss",
        "leadership",
        "presence",
    } <= running
    assert ("agent-runs" in running) is worker
