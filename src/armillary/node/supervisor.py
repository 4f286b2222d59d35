"""The node daemon's process supervisor: runs allocations as real, supervised processes.

Called by the node daemon: `start()` once (adopts what a previous daemon left
running), `converge(desired)` on a full assignments message and `update(add, remove)`
on a delta, `reports()` (all) or `report(id)` (one) whenever it reports, `close()` on
shutdown. It calls `on_change(id)` (synchronously, no I/O) whenever the report of the
allocation `id` changes or it is let go; the caller debounces, and reports only those.

This module decides *which* allocations are held and what to do with what a previous
daemon left behind; `node.lifecycle` moves each one (spawn, exit, restart, health,
stop).

Invariants:
- every replica is a direct child of the daemon at spawn, in its own session and
  process group, writing straight to its log file, so killing the daemon disturbs none;
- what the supervisor holds is on disk (node-state.json and its journal) within ~20 ms
  of a change, and before the daemon reports it (`persist`);
- a process is adopted only if its pid, start time and boot match the record, so a
  reused pid is never adopted; processes writing to a replica's log that the state file
  missed (the daemon died within a write delay of spawning them) are adopted by the
  first converge that still wants them, and killed otherwise;
- one supervisor per data dir (an flock), so two daemons never fight over processes;
- with per-tenant users (`node.tenancy`), nothing of the daemon's is open to replicas:
  the data dir is 0711, the state file and the lock 0600, `replicas/` (the logs) 0700,
  all root's; only `checkouts/` (read-only code) and each tenant's own directory are
  theirs to read.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

from armillary import errors
from armillary.node import checkouts, leases, logfiles, process, procfs, statefile, tenancy
from armillary.node.lifecycle import Lifecycle
from armillary.node.replica import Replica
from armillary.protocol import AllocationSpec, ReplicaReport

log = logging.getLogger(__name__)

STATE_WRITE_DELAY_S = 0.02
SPAWN_BATCH = 16  # spawns between yields to the loop, so crash restarts stay prompt
LOCK_FILE = "node.lock"


class Supervisor:
    """Runs, restarts, health-checks, stops and adopts the replicas of one node."""

    def __init__(
        self,
        *,
        data_dir: Path,
        address: str = "127.0.0.1",
        on_change: Callable[[str], None] | None = None,
        log_max_bytes: int = 10 * 1024 * 1024,
        log_keep: int = 3,
        tenant_uids: tenancy.UidRange | None = None,  # None: tenants run as our own user
        port_leases: Path | None = None,  # None: leases.default_directory()
        dynamic_ports: range = process.DYNAMIC_PORTS,
    ) -> None:
        self._data_dir = data_dir.absolute()
        lease_dir = port_leases or leases.default_directory(euid=os.geteuid())
        self._leases = leases.Leases(
            lease_dir,
            holder=f"the node daemon of {self._data_dir} (pid {os.getpid()})",
            private=lease_dir == leases.private_directory(euid=os.geteuid()),
        )
        self._tenants = tenancy.Tenants(
            self._data_dir / "tenants", uids=tenant_uids, euid=os.geteuid()
        )
        self._on_change = on_change
        self._log_max_bytes = log_max_bytes
        self._log_keep = log_keep
        self._life = Lifecycle(
            data_dir=self._data_dir,
            tenants=self._tenants,
            address=address,
            base_env={k: os.environ[k] for k in process.BASE_ENV_KEYS if k in os.environ},
            cwd=Path.cwd(),
            changed=self._changed,
            stopped=self._forget,
            ports_taken=self._ports_taken,
            leases=self._leases,
            dynamic_ports=dynamic_ports,
        )
        self._checkouts = checkouts.Checkouts(self._life.checkouts_dir, cwd=Path.cwd())
        self._checkout_tasks: set[asyncio.Task[None]] = set()
        self._replicas: dict[str, Replica] = {}
        self._desired: dict[str, AllocationSpec] = {}
        self._orphans: dict[str, list[procfs.Stat]] = {}  # found at start; claimed by converge
        self._stops: set[asyncio.Task[None]] = set()
        self._rotation: asyncio.Task[None] | None = None
        self._state = statefile.Writer(
            self._data_dir / statefile.FILE_NAME, self._entry, delay_s=STATE_WRITE_DELAY_S
        )
        self._converging = asyncio.Lock()
        self._lock_fd: int | None = None
        self._started = False
        self._closed = False

    # --- the interface ----------------------------------------------------------------------

    async def start(self) -> list[ReplicaReport]:
        """Load the state file, adopt live processes, resume the rest; start background work.

        Returns the reports of every allocation taken over from the state file.
        """
        if self._started:
            raise RuntimeError("Supervisor.start() was already called")
        self._started = True
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        self._leases.open()
        self._life.replicas_dir.mkdir(exist_ok=True)
        self._life.replicas_dir.chmod(0o700)  # the logs: read through the API, not by replicas
        self._tenants.check_reachable()
        found = procfs.writers(self._life.replicas_dir)
        for entry in statefile.load(self._state.path):
            self._restore(entry, found.pop(entry.spec.id, []))
        self._orphans = found
        self._rotation = asyncio.get_running_loop().create_task(
            logfiles.rotate_loop(
                self._live_logs, max_bytes=self._log_max_bytes, keep=self._log_keep
            ),
            name="rotate replica logs",
        )
        self._state.rewrite(list(self._replicas))
        return self.reports()

    async def converge(self, desired: Sequence[AllocationSpec]) -> None:
        """Hold exactly `desired`: start what is new, stop what is gone. Idempotent.

        Returns once every new process is spawned (not healthy); stops go on behind.
        """
        if not self._started or self._closed:
            raise RuntimeError("converge() needs a started, open Supervisor")
        async with self._converging:
            wanted = {spec.id: spec for spec in desired}
            gone = [held.id for held in self._replicas.values() if held.id not in wanted]
            self._desired = {}
            await self._change(list(wanted.values()), gone)

    async def update(self, add: Sequence[AllocationSpec], remove: Sequence[str]) -> None:
        """Hold `add` too and let `remove` go: `converge` on a change of the set, at a
        cost proportional to the change. An id removed that is not held is ignored."""
        if not self._started or self._closed:
            raise RuntimeError("update() needs a started, open Supervisor")
        async with self._converging:
            await self._change(add, remove)

    async def _change(self, add: Sequence[AllocationSpec], remove: Sequence[str]) -> None:
        """Stop what `remove` names, start what `add` brings that is not held; yield to
        the loop every `SPAWN_BATCH` spawns. Called under `_converging`."""
        for allocation_id in remove:
            self._desired.pop(allocation_id, None)
            held = self._replicas.get(allocation_id)
            if held is not None and not held.stopping:
                self._stop(held)
        started = 0
        for spec in add:
            self._desired[spec.id] = spec
            if spec.id not in self._replicas:
                self._start(spec)
                started += 1
                if started % SPAWN_BATCH == 0:
                    await asyncio.sleep(0)
        self._kill_orphans()

    def persist(self) -> None:
        """Write what changed to the state file now, not within its delay: the daemon
        calls it before it reports, so nothing the server has heard of (a replica's
        pid, its ports) is missing from the file a restarted daemon adopts from."""
        if self._started and not self._closed:
            self._state.flush()

    def reports(self) -> list[ReplicaReport]:
        """The current state of every held allocation, stopping ones included."""
        return [held.report() for held in self._replicas.values()]

    def report(self, allocation_id: str) -> ReplicaReport | None:
        """The current state of one allocation; None once it is no longer held."""
        held = self._replicas.get(allocation_id)
        return held.report() if held is not None else None

    def held_ids(self) -> list[str]:
        """The ids of every held allocation, stopping ones included."""
        return list(self._replicas)

    def log_path(self, allocation_id: str) -> Path:
        """The live log file of an allocation (kept after it is stopped)."""
        _check_path_part("allocation id", allocation_id)
        return self._life.log_path(allocation_id)

    @property
    def isolation(self) -> tenancy.Isolation:
        """Whether tenants run as users of their own or all as the daemon's user."""
        return self._tenants.isolation

    def spec(self, allocation_id: str) -> AllocationSpec | None:
        held = self._replicas.get(allocation_id)
        return held.spec if held is not None else None

    def environment(self, allocation_id: str) -> tuple[dict[str, str], Path]:
        """The env and working directory the replica runs with (for `exec`)."""
        held = self._replicas.get(allocation_id)
        if held is None:
            raise errors.NotFound(f"allocation {allocation_id!r} is not held by this node")
        return self._life.environment(held)

    def run_as(self, allocation_id: str) -> tenancy.RunAs | None:
        """Who the replica's processes run as (for `exec`); None: the daemon's user."""
        held = self._replicas.get(allocation_id)
        if held is None:
            raise errors.NotFound(f"allocation {allocation_id!r} is not held by this node")
        return self._life.run_as(held)

    async def close(self, *, stop_workloads: bool) -> None:
        """Shut down. `stop_workloads=False` leaves every process running for the next
        daemon to adopt and persists the state; True stops them all and clears it."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        for task in self._checkout_tasks:
            task.cancel()
        if self._rotation is not None:
            self._rotation.cancel()
            await asyncio.gather(self._rotation, return_exceptions=True)
        if stop_workloads:
            for held in list(self._replicas.values()):
                if not held.stopping:
                    self._stop(held)
            await asyncio.gather(*self._stops, return_exceptions=True)
            self._orphans.update(procfs.writers(self._life.replicas_dir))  # stragglers
            self._kill_orphans()
            entries: list[statefile.Entry] = []
        else:
            for task in self._stops:
                task.cancel()  # those replicas stay "stopping": the next daemon finishes
            await asyncio.gather(*self._stops, return_exceptions=True)
            entries = self._entries()
        self._state.cancel()
        statefile.dump(self._state.path, entries)
        health_tasks = [h.health_task for h in self._replicas.values() if h.health_task]
        for held in self._replicas.values():
            self._life.detach(held)
        await asyncio.gather(*health_tasks, return_exceptions=True)
        self._leases.close()  # the replicas left running keep their ports bound
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # --- holding and letting go -------------------------------------------------------------

    def _start(self, spec: AllocationSpec) -> None:
        held = Replica(spec=spec)
        self._replicas[spec.id] = held
        try:
            _check_path_part("allocation id", spec.id)
            _check_path_part("tenant", spec.tenant)
        except errors.Invalid as exc:
            held.state, held.reason, held.message = "failed", "InvalidSpec", str(exc)
            self._changed(held)
            return
        if self._adopt_found(held, self._orphans.pop(spec.id, []), restarted=False):
            return
        if spec.checkout is not None and not self._checkouts.ready(spec.checkout):
            held.state, held.reason = "pending", "CheckingOut"
            held.message = f"exporting {spec.checkout.commit} from {spec.checkout.repository}"
            self._changed(held)
            task = asyncio.get_running_loop().create_task(self._checkout_then_spawn(held))
            self._checkout_tasks.add(task)
            task.add_done_callback(self._checkout_tasks.discard)
            return
        self._life.spawn(held)

    async def _checkout_then_spawn(self, held: Replica) -> None:
        assert held.spec.checkout is not None
        try:
            await self._checkouts.ensure(held.spec.checkout)
        except (errors.CheckoutFailed, OSError, tarfile.TarError) as exc:
            if self._replicas.get(held.id) is held and not held.stopping:
                held.state, held.reason, held.message = "failed", "CheckoutFailed", str(exc)
                self._changed(held)
            return
        if self._replicas.get(held.id) is held and not held.stopping and not self._closed:
            self._life.spawn(held)

    def _stop(self, held: Replica) -> None:
        task = self._life.stop(held)
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)

    def _forget(self, held: Replica) -> None:
        """A stop finished: drop the allocation (its log directory stays)."""
        if self._replicas.get(held.id) is held:
            del self._replicas[held.id]
            self._leases.release(held.id)
        self._changed(None, allocation_id=held.id)  # no longer held: written as dropped
        again = self._desired.get(held.id)
        if again is not None and not self._closed and held.id not in self._replicas:
            self._start(again)  # asked for again while it was stopping

    # --- adoption ---------------------------------------------------------------------------

    def _restore(self, entry: statefile.Entry, found: list[procfs.Stat]) -> None:
        """Take over one allocation from the state file."""
        was = entry.report
        held = Replica(
            spec=entry.spec,
            ports=dict(was.ports),
            state=was.state,
            spawned=entry.spawned,
            restarts=was.restarts,
            consecutive=entry.consecutive,
            exit_code=was.exit_code,
            healthy=was.healthy,
            reason=was.reason,
            message=was.message,
        )
        self._replicas[held.id] = held
        self._lease_again(held)
        recorded = entry.process
        started_at = was.started_at
        if recorded is not None and started_at is None:
            started_at = recorded.create_time
        if (
            recorded is not None
            and started_at is not None
            and procfs.is_alive(recorded)
            and self._life.adopt(held, recorded, started_at=started_at)
        ):
            _kill_groups(found, keep_pgid=recorded.pgid)
            if held.state == "stopping":
                self._stop(held)
        elif held.state == "stopping":
            _kill_groups(found, keep_pgid=None)
            del self._replicas[held.id]
            self._leases.release(held.id)
        elif self._adopt_found(held, found, restarted=True):
            pass  # respawned after the last write: adopted by its log file
        elif recorded is not None and started_at is not None:
            self._life.ended_unwatched(held, started_at=started_at)
        elif entry.restart_pending:
            self._life.resume_backoff(held)
        elif held.state not in ("succeeded", "failed"):
            self._life.spawn(held)

    def _lease_again(self, held: Replica) -> None:
        """Take back the leases of a replica the previous daemon held: they died with it.
        A port another daemon leased since is left to it; this replica moves off it when
        it next starts (a fixed port: PortInUse naming that daemon)."""
        for name, port in held.ports.items():
            holder = self._leases.take(port, owner=held.id)
            if holder is not None:
                log.warning("port %d (%s) of %s is leased by %s", port, name, held.id, holder)

    def _adopt_found(self, held: Replica, found: list[procfs.Stat], *, restarted: bool) -> bool:
        """Adopt the session leader among `found` (processes writing to this allocation's
        log); kill the rest. False if there is none to adopt."""
        leader = next((s for s in found if s.pid == s.sid), None)
        identity = None
        if leader is not None:
            identity = procfs.identify(leader.pid, boot_time_s=procfs.boot_time())
        if identity is None or not self._life.adopt(
            held, identity, started_at=identity.create_time
        ):
            _kill_groups(found, keep_pgid=None)
            return False
        _kill_groups(found, keep_pgid=identity.pgid)
        if held.spawned and restarted:
            held.restarts += 1
        held.spawned = True
        held.changed()
        log.info("adopted pid %d of %s, found by its log file", identity.pid, held.id)
        return True

    def _kill_orphans(self) -> None:
        """Kill processes found at start that no converge claimed: nobody wants them, and
        they would hold ports that wanted replicas need."""
        for allocation_id, found in self._orphans.items():
            log.warning("killing %d orphaned process(es) of %s", len(found), allocation_id)
            _kill_groups(found, keep_pgid=None)
        self._orphans = {}

    # --- plumbing ---------------------------------------------------------------------------

    def _ports_taken(self, held: Replica) -> set[int]:
        """Ports the other replicas of this node hold."""
        return {p for r in self._replicas.values() if r is not held for p in r.ports.values()}

    def _entries(self) -> list[statefile.Entry]:
        return [held.entry() for held in self._replicas.values()]

    def _entry(self, allocation_id: str) -> statefile.Entry | None:
        held = self._replicas.get(allocation_id)
        return None if held is None else held.entry()

    def _live_logs(self) -> list[Path]:
        return [self._life.log_path(h.id) for h in self._replicas.values() if h.proc is not None]

    def _changed(self, held: Replica | None, *, allocation_id: str = "") -> None:
        """The report of `held` changed (or the allocation `allocation_id` was let go)."""
        if held is not None:
            held.changed()
            allocation_id = held.id
        if allocation_id and not self._closed:
            self._state.mark_dirty(allocation_id)
        if self._on_change is not None and allocation_id:
            try:
                self._on_change(allocation_id)
            except Exception:  # the caller's callback: its bug must not stop supervision
                log.exception("on_change callback failed")

    def _lock_data_dir(self) -> None:
        fd = os.open(self._data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise errors.Conflict(f"another node daemon is using {self._data_dir}") from None
        os.fchmod(fd, 0o600)  # a lock left by an older daemon was 0644
        self._lock_fd = fd


def _kill_groups(found: list[procfs.Stat], *, keep_pgid: int | None) -> None:
    for pgid in {s.pgid for s in found} - {keep_pgid}:
        process.kill_group(pgid, signal.SIGKILL)


def _check_path_part(what: str, value: str) -> None:
    """Ids and tenants become directory names: no separators, no dot names."""
    if not value or "/" in value or "\0" in value or value in (".", ".."):
        raise errors.Invalid(f"expected a {what} usable as a directory name, got {value!r}")
