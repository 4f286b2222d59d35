"""Schedules fire, on SQLite and on Postgres.

Two halves. The first drives the schedule controller itself with an injected clock
against a real store (its own database, apart from the server's, so the server's
controller never sees these schedules): cron times, missed runs across a "restart"
(a new Database handle and a new controller), deadlines, policies, history, two
controllers racing one fire time, a tenant on a Kubernetes cluster (its CronJob
runs the schedule: no run here). No test waits for a wall-clock minute.

The second half uses a real server and a real node daemon: `run-now` makes a run an
allocation on the node, its process runs to completion and the outcome is recorded,
through the API and the CLI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from armillary.control import apply as applying
from armillary.control.driver import Result
from armillary.control.schedules import ScheduleController
from armillary.errors import Conflict
from armillary.resources.stack import Stack
from armillary.resources.tenant import Tenant
from armillary.runtime.expand import expand
from armillary.runtime.nodes import NodesRuntime
from armillary.store import allocations, nodes, repository, schedule_runs
from armillary.store.database import MIGRATIONS, Database
from tests.support.api import apply, delete, ready, replicas
from tests.support.cli import Cli
from tests.support.clock import Clock
from tests.support.nodes import NodeProcess
from tests.support.postgres import fresh_database
from tests.support.processes import processes_marked
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

T0 = dt.datetime(2026, 11, 22, 10, 0, 30, tzinfo=dt.UTC)  # the schedules are created then


def at(hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, 22, hour, minute, second, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def store_url(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A store of these tests' own: the server's controller must not fire them."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('firing') / 'firing.db'}"
        return
    yield from fresh_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def empty_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, not migrated yet."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    yield from fresh_database(request.getfixturevalue("postgres_server"))


def _migrate_to(revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return run


@pytest.fixture
def db(store: Database) -> Database:
    """conftest's `store`, on this module's own `store_url`."""
    return store


def stack_doc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "armillary.dev/v1",
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {
            "components": [
                {"name": "report", "type": "job", "command": ["true"]},
                {"name": "web", "command": ["sleep", "1000"]},
            ]
        },
    }


def tenant_doc(name: str, stack: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "armillary.dev/v1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"org": "acme", "stack": stack, **spec},
    }


def schedule_doc(name: str, tenant: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "armillary.dev/v1",
        "kind": "Schedule",
        "metadata": {"name": name},
        "spec": {"tenant": tenant, "component": "report", "cron": "0 * * * *", **spec},
    }


async def put(db: Database, *documents: dict[str, Any], now: dt.datetime = T0) -> None:
    await applying.apply(db, applying.parse_documents(list(documents)), prune=False, now=now)


async def remove(db: Database, kind: str, name: str) -> None:
    async with db.write() as conn:
        await repository.remove(conn, kind, name)


class World:
    """One test's tenant, stack, node and schedule in the shared store."""

    def __init__(self, db: Database, clock: Clock[dt.datetime]) -> None:
        self.db = db
        self.clock = clock
        mark = uuid.uuid4().hex[:8]
        self.tenant, self.stack, self.node = f"t-{mark}", f"s-{mark}", f"n-{mark}"
        self.schedule = f"sch-{mark}"
        self.controller = ScheduleController(db, NodesRuntime(db), clock=clock)

    async def create(self, *, inline: list[dict[str, Any]] | None = None, **spec: Any) -> None:
        async with self.db.write() as conn:
            await nodes.register(
                conn,
                name=self.node,
                address="127.0.0.1",
                labels={},
                capacity={"cpu_millicores": 4000, "memory_mb": 8192},
                now=T0,
            )
        documents = [
            stack_doc(self.stack),
            tenant_doc(self.tenant, self.stack, **({"schedules": inline} if inline else {})),
        ]
        if inline is None:
            documents.append(schedule_doc(self.schedule, self.tenant, **spec))
        await put(self.db, *documents)

    async def reconcile(self, at_time: dt.datetime, key: str | None = None) -> Result:
        self.clock.now = at_time
        return await self.controller.reconcile(key or self.schedule)

    async def runs(self, key: str | None = None) -> list[schedule_runs.Run]:
        async with self.db.read() as conn:
            return await schedule_runs.runs_of(conn, key or self.schedule)

    async def status(self) -> dict[str, Any]:
        async with self.db.read() as conn:
            return (await repository.require(conn, "Schedule", self.schedule)).status

    async def allocation(self, run: schedule_runs.Run) -> allocations.Allocation | None:
        assert run.allocation_id is not None
        async with self.db.read() as conn:
            return await allocations.get(conn, run.allocation_id)

    async def report(self, run: schedule_runs.Run, state: str, exit_code: int | None) -> None:
        """What the node would say of the run's allocation."""
        found = await self.allocation(run)
        assert found is not None
        async with self.db.write() as conn:
            await allocations.record_reports(
                conn,
                found.node,
                [{"id": found.id, "state": state, "exit_code": exit_code, "restarts": 0}],
                now=self.clock.now,
            )


@pytest.fixture
def world(db: Database) -> World:
    return World(db, Clock(T0))


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


# --- firing at cron times ---------------------------------------------------------------


async def test_a_schedule_fires_once_at_each_cron_time_and_records_the_outcome(
    world: World,
) -> None:
    await world.create()
    result = await world.reconcile(at(10, 30))
    assert await world.runs() == []
    assert result.requeue_after_s == 30 * 60  # woken at the next fire time
    status = await world.status()
    assert status["nextScheduleTime"] == "2026-11-22T11:00:00Z"
    assert condition(status, "Ready")["status"] == "True"

    await world.reconcile(at(11))
    await world.reconcile(at(11, 0, 5))  # again: nothing more
    [run] = await world.runs()
    assert (run.scheduled_at, run.state, run.trigger) == (at(11), "running", "schedule")
    allocation = await world.allocation(run)
    assert allocation is not None and allocation.schedule_run == run.id
    assert allocation.spec["type"] == "job" and allocation.component == "report"
    assert allocation.spec["env"]["ARMILLARY_SCHEDULED_TIME"] == "2026-11-22T11:00:00Z"
    status = await world.status()
    assert status["lastScheduleTime"] == "2026-11-22T11:00:00Z"
    assert status["nextScheduleTime"] == "2026-11-22T12:00:00Z"
    assert [a["run"] for a in status["active"]] == [run.id]

    world.clock.now = at(11, 2)
    await world.report(run, "succeeded", 0)
    await world.reconcile(at(11, 2))
    [run] = await world.runs()
    assert (run.state, run.exit_code) == ("succeeded", 0)
    assert run.finished_at is not None
    assert await world.allocation(run) is None  # removed once its outcome is recorded
    status = await world.status()
    assert status["lastSuccessfulTime"] == run.finished_at.isoformat().replace("+00:00", "Z")
    assert status["lastRun"]["state"] == "succeeded"
    assert status["active"] == []

    await world.reconcile(at(12))
    assert [r.scheduled_at for r in await world.runs()] == [at(11), at(12)]


async def test_forbid_skips_a_fire_time_while_a_run_is_active(world: World) -> None:
    await world.create(concurrency_policy="Forbid")
    await world.reconcile(at(11))
    await world.reconcile(at(12, 0, 1))
    [run] = await world.runs()
    assert run.scheduled_at == at(11)
    status = await world.status()
    assert status["lastSkipped"]["reason"] == "RunActive"
    assert status["lastSkipped"]["scheduledTime"] == "2026-11-22T12:00:00Z"
    # The skipped fire time does not run late once the active run ends.
    await world.report(run, "succeeded", 0)
    await world.reconcile(at(12, 5))
    assert [r.scheduled_at for r in await world.runs()] == [at(11)]


async def test_replace_stops_the_active_run_and_starts_the_new_one(world: World) -> None:
    await world.create(concurrency_policy="Replace")
    await world.reconcile(at(11))
    [first] = await world.runs()
    await world.reconcile(at(12))
    old, new = await world.runs()
    assert (old.id, old.state, old.reason) == (first.id, "stopped", "Replaced")
    assert await world.allocation(old) is None  # its node stops the process
    assert new.state == "running" and await world.allocation(new) is not None


async def test_allow_runs_alongside(world: World) -> None:
    await world.create(concurrency_policy="Allow")
    await world.reconcile(at(11))
    await world.reconcile(at(12))
    assert [r.state for r in await world.runs()] == ["running", "running"]


async def test_history_keeps_at_most_history_limit_finished_runs(world: World) -> None:
    await world.create(history_limit=1, concurrency_policy="Allow")
    for hour in (11, 12, 13):
        await world.reconcile(at(hour))
        run = (await world.runs())[-1]
        await world.report(run, "failed" if hour == 13 else "succeeded", 1 if hour == 13 else 0)
        await world.reconcile(at(hour, 1))
    await world.reconcile(at(13, 2))
    [kept] = await world.runs()
    assert (kept.scheduled_at, kept.state, kept.exit_code) == (at(13), "failed", 1)
    degraded = condition(await world.status(), "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "LastRunFailed")
    assert "exit code 1" in degraded["message"]


# --- restarts, deadlines, races ---------------------------------------------------------


async def test_a_server_down_across_fire_times_runs_the_missed_job_once(
    world: World, store_url: str
) -> None:
    await world.create()
    await world.reconcile(at(10, 59))
    assert await world.runs() == []
    # The server dies at 10:59 and starts again at 13:30: 11:00, 12:00 and 13:00 passed.
    for attempt in range(3):
        restarted = await Database.open(store_url)
        try:
            controller = ScheduleController(
                restarted, NodesRuntime(restarted), clock=Clock(at(13, 30, attempt))
            )
            await controller.reconcile(world.schedule)
        finally:
            await restarted.close()
    [run] = await world.runs()
    assert run.scheduled_at == at(13)  # the newest missed fire time, once


async def test_a_missed_fire_time_past_the_starting_deadline_starts_nothing(
    world: World, store_url: str
) -> None:
    await world.create(starting_deadline_s=300)
    await world.reconcile(at(10, 59))
    restarted = await Database.open(store_url)
    try:
        controller = ScheduleController(restarted, NodesRuntime(restarted), clock=Clock(at(11, 6)))
        await controller.reconcile(world.schedule)
    finally:
        await restarted.close()
    assert await world.runs() == []
    skipped = (await world.status())["lastSkipped"]
    assert (skipped["reason"], skipped["scheduledTime"]) == (
        "MissedDeadline",
        "2026-11-22T11:00:00Z",
    )
    await world.reconcile(at(11, 59))
    assert await world.runs() == []  # 11:00 stays missed
    await world.reconcile(at(12, 5))  # within 300 s of 12:00
    assert [r.scheduled_at for r in await world.runs()] == [at(12)]


async def test_two_controllers_racing_one_fire_time_start_one_run(
    world: World, store_url: str
) -> None:
    await world.create(concurrency_policy="Allow")
    await world.reconcile(at(10, 59))
    handles = [await Database.open(store_url) for _ in range(4)]
    try:
        controllers = [ScheduleController(h, NodesRuntime(h), clock=Clock(at(11))) for h in handles]
        for _ in range(3):
            outcomes = await asyncio.gather(
                *(c.reconcile(world.schedule) for c in controllers), return_exceptions=True
            )
            assert all(isinstance(o, Result | Conflict) for o in outcomes), outcomes
    finally:
        for handle in handles:
            await handle.close()
    [run] = await world.runs()
    assert run.scheduled_at == at(11)
    async with world.db.read() as conn:
        held = await allocations.for_tenant(conn, world.tenant)
    assert [a.schedule_run for a in held] == [run.id]


async def test_changing_the_cron_counts_from_the_change(world: World) -> None:
    await world.create()
    await world.reconcile(at(10, 30))
    await put(world.db, schedule_doc(world.schedule, world.tenant, cron="15 * * * *"))
    await world.reconcile(at(10, 40))  # 10:15 of the new cron passed before the change
    assert await world.runs() == []
    await world.reconcile(at(11, 15))
    assert [r.scheduled_at for r in await world.runs()] == [at(11, 15)]


async def test_a_suspended_schedule_starts_nothing_and_catches_nothing_up(world: World) -> None:
    await world.create(suspend=True)
    await world.reconcile(at(11))
    assert await world.runs() == []
    ready = condition(await world.status(), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Suspended")
    await put(world.db, schedule_doc(world.schedule, world.tenant, suspend=False))
    await world.reconcile(at(11, 30))
    assert await world.runs() == []
    await world.reconcile(at(12))
    assert len(await world.runs()) == 1


async def test_schedules_stored_before_schedules_fired_count_from_the_upgrade(
    empty_url: str,
) -> None:
    """Upgrading to the first version that fires schedules must not fire every stored
    schedule at once for a fire time long past (0004 counts them from the upgrade)."""
    db = await Database.open(empty_url, migrate=False)
    try:
        conn = await db.connection()
        try:
            async with conn.begin():
                await conn.run_sync(_migrate_to("0003"))
        finally:
            await conn.close()
        old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        world = World(db, Clock(old))
        await put(db, schedule_doc(world.schedule, world.tenant, cron="0 0 1 1 *"), now=old)
        await db.migrate()
        world.clock.now = old
        await world.create()  # tenant, stack and node: it could run
        await world.reconcile(dt.datetime.now(dt.UTC))
        assert await world.runs() == []
        # A schedule created after the upgrade counts from its creation, as ever.
        await put(db, schedule_doc("fresh", world.tenant, cron="0 0 1 1 *"), now=old)
        await world.controller.reconcile("fresh")
        assert len(await world.runs("fresh")) == 1
    finally:
        await db.close()


# --- what runs where --------------------------------------------------------------------


async def test_a_schedule_must_name_a_job_of_its_tenants_stack(world: World) -> None:
    await world.create(component="web")
    await world.reconcile(at(11))
    assert await world.runs() == []
    status = await world.status()
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NotAJob")
    assert "'web'" in ready["message"] and "job" in ready["message"]
    assert status["lastSkipped"]["reason"] == "CannotRun"
    with pytest.raises(Conflict, match="cannot run now"):
        await world.controller.run_now(world.schedule)

    await put(world.db, schedule_doc(world.schedule, world.tenant, component="nope"))
    await world.reconcile(at(11, 1))
    ready = condition(await world.status(), "Ready")
    assert ready["reason"] == "ComponentNotFound" and "'nope'" in ready["message"]


async def test_the_tenant_controller_neither_counts_nor_removes_runs(world: World) -> None:
    await world.create(concurrency_policy="Allow")
    runtime = NodesRuntime(world.db)
    async with world.db.read() as conn:
        tenant = Tenant.model_validate(
            (await repository.require(conn, "Tenant", world.tenant)).document()
        )
        stack = Stack.model_validate(
            (await repository.require(conn, "Stack", world.stack)).document()
        )
    instance = expand(tenant, stack)
    await runtime.converge(world.tenant, instance, now=T0)  # the tenant's own replicas
    await world.reconcile(at(11))
    [run] = await world.runs()
    outcome = await runtime.converge(world.tenant, instance, now=at(11))
    assert run.id not in outcome.step.remove
    assert outcome.step.components["report"].total == 1  # its own job replica only
    assert await world.allocation(run) is not None

    # A deleted tenant: its replicas go with the tenant controller, its runs with ours.
    await remove(world.db, "Tenant", world.tenant)
    await runtime.converge(world.tenant, None, now=at(11, 1))
    assert await world.allocation(run) is not None
    await world.reconcile(at(11, 2))
    assert await world.runs() == []
    async with world.db.read() as conn:
        assert await allocations.for_tenant(conn, world.tenant) == []
    ready = condition(await world.status(), "Ready")
    assert ready["reason"] == "TenantNotFound"


async def test_a_schedule_of_a_tenant_on_a_cluster_places_no_run_and_keeps_its_status(
    world: World,
) -> None:
    # The cluster's CronJob runs it (the kubernetes runtime applies it): nothing goes
    # to nodes, and the next fire time is still this controller's to say.
    await world.create()
    await put(
        world.db, tenant_doc(world.tenant, world.stack, runtime={"kubernetes": {"cluster": "emu"}})
    )
    await world.reconcile(at(10, 30))
    await world.reconcile(at(11))
    assert await world.runs() == []
    async with world.db.read() as conn:
        assert await allocations.for_tenant(conn, world.tenant) == []
    status = await world.status()
    assert status["nextScheduleTime"] == "2026-11-22T12:00:00Z"
    assert "lastSkipped" not in status
    with pytest.raises(Conflict, match="runs on kubernetes/emu, where its CronJob runs it"):
        await world.controller.run_now(world.schedule)
    assert await world.runs() == []

    # Back on nodes, the next fire time places a run again.
    await put(world.db, tenant_doc(world.tenant, world.stack, runtime="nodes"))
    await world.reconcile(at(12))
    [run] = await world.runs()
    assert run.scheduled_at == at(12)


async def test_a_tenants_inline_schedule_fires_as_tenant_slash_name(world: World) -> None:
    await world.create(inline=[{"name": "nightly", "component": "report", "cron": "0 * * * *"}])
    key = f"{world.tenant}/nightly"
    assert key in await world.controller.all_keys()
    await world.reconcile(at(10, 30), key)  # an inline schedule counts from when it is seen
    await world.reconcile(at(11), key)
    [run] = await world.runs(key)
    assert run.schedule == key and run.tenant == world.tenant
    # The item leaves the tenant: its runs stop and are forgotten.
    await put(world.db, tenant_doc(world.tenant, world.stack))
    await world.reconcile(at(11, 1), key)
    assert await world.runs(key) == []
    assert await world.allocation(run) is None
    async with world.db.read() as conn:
        assert await schedule_runs.get_state(conn, key) is None


async def test_a_run_without_a_node_waits_and_gives_up_past_its_deadline(world: World) -> None:
    await world.create(starting_deadline_s=600)
    async with world.db.write() as conn:
        await nodes.disconnect_all(conn)  # every node of the store, so nothing fits
    result = await world.reconcile(at(11))
    [run] = await world.runs()
    assert (run.state, run.allocation_id, run.reason) == ("pending", None, "Unplaced")
    assert "no node fits" in (run.message or "")
    assert result.requeue_after_s is not None and result.requeue_after_s <= 5
    assert condition(await world.status(), "Degraded")["reason"] == "RunUnplaced"
    await world.reconcile(at(11, 11))
    [run] = await world.runs()
    assert (run.state, run.reason) == ("failed", "Unplaced")


# --- a real server and a real node: run-now ---------------------------------------------

YEARLY = "0 0 1 1 *"  # never due while these tests run: only run-now starts runs


def job(name: str, command: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "job",
        "command": ["sh", "-c", command],
        "restart": {"policy": "never"},
        **extra,
    }


def served_stack(name: str, *components: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "armillary.dev/v1",
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"components": list(components)},
    }


def marked_tenant(name: str, stack: str, mark: str, **spec: Any) -> dict[str, Any]:
    return tenant_doc(name, stack, env={"ARMILLARY_TEST_MARK": mark}, **spec)


def runs_of(server: ServerProcess, name: str) -> list[dict[str, Any]]:
    with server.client() as http:
        response = http.get(f"/api/v1/schedules/{name}/runs")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def ended(server: ServerProcess, name: str, run_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = [r for r in runs_of(server, name) if r["id"] == run_id]
        return found[0] if found and found[0]["state"] in ("succeeded", "failed") else None

    return wait_for(done, timeout_s=30, every_s=0.05, what=f"run {run_id} to end")


def run_now(server: ServerProcess, name: str) -> tuple[int, dict[str, Any]]:
    with server.client() as http:
        response = http.post(f"/api/v1/schedules/{name}/run")
    return response.status_code, response.json()


def schedule_item(server: ServerProcess, name: str) -> dict[str, Any]:
    with server.client() as http:
        items = http.get("/api/v1/scheduled-jobs").json()["items"]
    return next(i for i in items if i["name"] == name)


def test_run_now_runs_the_job_as_an_allocation_on_the_node_and_records_it(
    server: ServerProcess, node: NodeProcess, cli: Cli
) -> None:
    mark = uuid.uuid4().hex[:8]
    tenant, name = f"t-{mark}", f"report-{mark}"
    write = 'echo "$ARMILLARY_SCHEDULE $ARMILLARY_RUN" >> "$ARMILLARY_DATA_DIR/runs.log"; sleep 0.5'
    apply(
        server,
        served_stack(
            f"s-{mark}", job("report", write), {"name": "web", "command": ["sleep", "1000"]}
        ),
        marked_tenant(tenant, f"s-{mark}", mark),
        schedule_doc(name, tenant, cron=YEARLY),
    )
    wait_for(lambda: ready(server, tenant), timeout_s=60, what="tenant Ready")
    replicas_before = {r["id"] for r in replicas(server, tenant)}

    code, out, err = cli("schedule", "run-now", name)
    assert code == 0, err
    assert f"of {name} running on {node.name}" in out, out
    run_id = out.split()[1]
    # While it runs, it is an allocation on the node, apart from the tenant's replicas.
    running = wait_for(
        lambda: [r for r in replicas(server, tenant) if r["id"] not in replicas_before],
        what="the run's allocation",
    )
    assert running[0]["component"] == "report" and running[0]["node"] == node.name

    done = ended(server, name, run_id)
    assert (done["state"], done["exitCode"], done["trigger"]) == ("succeeded", 0, "manual")
    log = node.data_dir / "tenants" / tenant / "runs.log"
    assert log.read_text().splitlines()[-1] == f"{name} {run_id}"
    wait_for(
        lambda: {r["id"] for r in replicas(server, tenant)} == replicas_before,
        what="the run's allocation removed once recorded",
    )
    assert ready(server, tenant)  # the tenant counted and removed nothing of it

    code, out, _ = cli("schedule", "runs", name)
    assert code == 0 and run_id in out and "succeeded" in out and "manual" in out
    status = wait_for(
        lambda: (s := schedule_item(server, name)["status"]).get("lastRun") and s,
        what="status with the last run",
    )
    assert status["lastRun"]["run"] == run_id and "lastSuccessfulTime" in status
    assert status["nextScheduleTime"].endswith("-01-01T00:00:00Z")
    code, out, _ = cli("schedules")
    line = next(line for line in out.splitlines() if line.startswith(name))
    assert tenant in line and YEARLY in line and "Ready" in line
    code, out, _ = cli("schedules", "-o", "json")
    assert code == 0 and json.loads(out)


def test_a_failing_run_is_recorded_with_its_exit_code(
    server: ServerProcess, node: NodeProcess, cli: Cli
) -> None:
    mark = uuid.uuid4().hex[:8]
    tenant, name = f"t-{mark}", f"fail-{mark}"
    apply(
        server,
        served_stack(f"s-{mark}", job("report", "exit 3")),
        marked_tenant(tenant, f"s-{mark}", mark),
        schedule_doc(name, tenant, cron=YEARLY),
    )
    code, out, err = cli("schedule", "run-now", name, "--wait")
    assert code == 1, (out, err)
    assert "failed (exit code 3)" in out
    [run] = runs_of(server, name)
    assert (run["state"], run["exitCode"]) == ("failed", 3)
    degraded = wait_for(
        lambda: next(
            (
                c
                for c in schedule_item(server, name)["status"].get("conditions", [])
                if c["type"] == "Degraded" and c["status"] == "True"
            ),
            None,
        ),
        what="Degraded",
    )
    assert degraded["reason"] == "LastRunFailed" and "exit code 3" in degraded["message"]
    delete(server, "tenants", tenant)


def test_forbid_refuses_a_second_run_replace_stops_the_first_and_delete_stops_all(
    server: ServerProcess, node: NodeProcess, cli: Cli
) -> None:
    mark = uuid.uuid4().hex[:8]
    tenant, name = f"t-{mark}", f"long-{mark}"
    apply(
        server,
        served_stack(f"s-{mark}", job("report", "exec sleep 1000", stop_grace_s=1)),
        marked_tenant(tenant, f"s-{mark}", mark),
    )
    wait_for(lambda: len(processes_marked(mark)) == 1, what="the tenant's own job")
    apply(server, schedule_doc(name, tenant, cron=YEARLY))
    code, first = run_now(server, name)
    assert code == 202 and first["state"] == "running"
    wait_for(lambda: len(processes_marked(mark)) == 2, what="the run's process")

    code, problem = run_now(server, name)
    assert code == 409 and "concurrency_policy is Forbid" in problem["detail"]
    code, _, err = cli("schedule", "run-now", name)
    assert code == 6 and "concurrency_policy is Forbid" in err

    apply(server, schedule_doc(name, tenant, cron=YEARLY, concurrency_policy="Replace"))
    code, second = run_now(server, name)
    assert code == 202
    by_id = {r["id"]: r for r in runs_of(server, name)}
    assert by_id[first["id"]]["state"] == "stopped"
    assert by_id[second["id"]]["state"] == "running"
    wait_for(
        lambda: (
            {p.environ().get("ARMILLARY_RUN") for p in processes_marked(mark)}
            == {None, second["id"]}
        ),
        what="the first run's process stopped, the second's running",
    )

    delete(server, "schedules", name)
    wait_for(lambda: len(processes_marked(mark)) == 1, what="the run stopped with its schedule")
    with server.client() as http:
        assert http.get(f"/api/v1/schedules/{name}/runs").status_code == 404
    delete(server, "tenants", tenant)
    wait_for(lambda: not processes_marked(mark), what="cleanup")


def test_an_inline_schedule_runs_as_tenant_slash_name_and_goes_with_its_tenant(
    server: ServerProcess, node: NodeProcess, cli: Cli
) -> None:
    mark = uuid.uuid4().hex[:8]
    tenant = f"t-{mark}"
    inline = [
        {"name": "nightly", "component": "report", "cron": YEARLY, "time_zone": "Europe/Paris"}
    ]
    apply(
        server,
        served_stack(f"s-{mark}", job("report", "exec sleep 1000", stop_grace_s=1)),
        marked_tenant(tenant, f"s-{mark}", mark, schedules=inline),
    )
    key = f"{tenant}/nightly"
    code, out, _ = cli("schedules")
    assert code == 0 and any(line.startswith(key) for line in out.splitlines()), out
    code, out, err = cli("schedule", "run-now", key)
    assert code == 0, err
    [run] = runs_of(server, key)
    assert run["schedule"] == key and run["state"] == "running"
    wait_for(
        lambda: run["id"] in {p.environ().get("ARMILLARY_RUN") for p in processes_marked(mark)},
        what="the run's process",
    )
    item = schedule_item(server, key)
    assert (item["source"], item["timeZone"], item["tenant"]) == ("Tenant", "Europe/Paris", tenant)

    delete(server, "tenants", tenant)
    wait_for(lambda: not processes_marked(mark), what="the tenant's replicas and runs stopped")
    wait_for(lambda: not replicas(server, tenant), what="every allocation removed")
    with server.client() as http:
        assert http.get(f"/api/v1/schedules/{key}/runs").status_code == 404


def test_naming_a_schedule_that_is_not_there_is_a_404(server: ServerProcess, cli: Cli) -> None:
    with server.client() as http:
        response = http.post("/api/v1/schedules/no-such-schedule/run")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert "no-such-schedule" in response.json()["detail"]
        assert http.post("/api/v1/schedules/nobody/nightly/run").status_code == 404
    code, _, err = cli("schedule", "runs", "no-such-schedule")
    assert code == 5 and "not found" in err
