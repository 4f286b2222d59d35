"""The life of one replica's processes: spawn, exit, restart, health, timeout, stop.

Called by `node.supervisor`, which decides *which* allocations to hold and calls in
here to move one of them: `spawn`, `adopt`, `ended_unwatched`, `resume_backoff`,
`stop`. Everything else happens in event-loop callbacks this module registers (pidfd
readers, restart timers, health tasks), and each change is announced through the
`changed` callback.

Invariants: spawning is synchronous, so the first restart after a crash happens in the
very callback that saw the exit (no backoff, no extra loop turn); a callback that finds
a different `Proc` on the replica than the one it was registered for does nothing, so
nothing stale ever acts on a newer process; what to do after an exit is decided only by
the pure `restart.after_exit`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from armillary import errors
from armillary.node import checkouts, health, logfiles, process, procfs, restart, tenancy
from armillary.node.leases import Leases
from armillary.node.replica import Proc, Replica
from armillary.protocol import ReplicaState

log = logging.getLogger(__name__)

KILL_WAIT_S = 5.0  # after SIGKILL; longer means a process stuck in the kernel (D state)
HEALTH_STATE: dict[bool | None, ReplicaState] = {
    True: "running",
    False: "unhealthy",
    None: "starting",
}


class Lifecycle:
    """Moves replicas between states by acting on their processes."""

    def __init__(
        self,
        *,
        data_dir: Path,
        tenants: tenancy.Tenants,
        address: str,
        base_env: Mapping[str, str],
        cwd: Path,
        changed: Callable[[Replica], None],
        stopped: Callable[[Replica], None],
        ports_taken: Callable[[Replica], set[int]],
        leases: Leases,
        dynamic_ports: range = process.DYNAMIC_PORTS,
    ) -> None:
        self.replicas_dir = data_dir / "replicas"
        self.checkouts_dir = data_dir / "checkouts"
        self._tenants = tenants
        self._address = address
        self._base_env = dict(base_env)
        self._cwd = cwd
        self._changed = changed
        self._stopped = stopped
        self._ports_taken = ports_taken
        self._leases = leases
        self._dynamic_ports = dynamic_ports
        self._boot_time_s = procfs.boot_time()

    def log_path(self, allocation_id: str) -> Path:
        return logfiles.path(self.replicas_dir, allocation_id)

    def environment(self, held: Replica) -> tuple[dict[str, str], Path]:
        """The env and cwd of the replica; creates its tenant's data directory.

        Raises SpawnError when the tenant cannot have its own user on this node.
        """
        spec = held.spec
        tenant_dir, run_as = self._tenants.prepare(spec.tenant)
        root = self._cwd
        if spec.checkout is not None:  # a release runs from its tag's tree, never from ours
            root = checkouts.location(self.checkouts_dir, spec.checkout)
        return process.environment(
            spec,
            ports=held.ports,
            base=self._base_env,
            tenant_dir=tenant_dir,
            cwd=root,
            own_user=run_as is not None,
        )

    def run_as(self, held: Replica) -> tenancy.RunAs | None:
        """Who the replica's processes run as (None: the daemon's own user)."""
        return self._tenants.prepare(held.spec.tenant)[1]

    # --- starting ---------------------------------------------------------------------------

    def spawn(self, held: Replica) -> None:
        """Start the replica's process now; a failure is handled like a crash."""
        spec = held.spec
        held.restart_timer = None
        try:
            self._resolve_ports(held)
            env, cwd = self.environment(held)
            run_as = self.run_as(held)
            fd = logfiles.open_append(self.log_path(spec.id))
            try:
                if held.spawned:  # a run ended: say where the next begins, and why
                    marker = logfiles.restart_marker(
                        at_s=time.time(),
                        restart=held.restarts + 1,
                        exit_code=held.exit_code,
                        why=held.message,
                    )
                    logfiles.write_marker(fd, self.log_path(spec.id), marker)
                pid = process.spawn(
                    spec.command, env=env, cwd=cwd, stdout=fd, stderr=fd, run_as=run_as
                )
            finally:
                os.close(fd)  # the child has its own copy
        except errors.SpawnError as exc:
            self._spawn_failed(held, exc.reason, exc.message)
            return
        except OSError as exc:  # the data dir: permissions, a full disk
            self._spawn_failed(held, "SpawnFailed", f"preparing {spec.id}: {exc}")
            return
        identity = procfs.identify(pid, boot_time_s=self._boot_time_s) or procfs.Identity(
            pid=pid, pgid=pid, start_ticks=-1, create_time=time.time(), boot_id=""
        )  # (the fallback cannot happen: an unreaped child is always in /proc)
        try:
            proc = self._watch(held, identity, started_mono=asyncio.get_running_loop().time())
        except OSError as exc:  # out of fds: a process we cannot watch must not run
            process.kill_group(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self._spawn_failed(held, "SpawnFailed", f"cannot watch pid {pid}: {exc}")
            return
        if held.spawned:
            held.restarts += 1
        held.spawned = True
        held.started_at = time.time()
        held.reason = held.message = held.healthy = None
        held.state = "running" if spec.health_check is None else "starting"
        if spec.health_check is not None:
            self._start_health(held, proc, health.Status())
        self._arm_timeout(held, proc, remaining_s=spec.timeout_s)
        self._changed(held)

    def _resolve_ports(self, held: Replica) -> None:
        """Pick the replica's ports and lease them host-wide (`node.leases`); raise
        `SpawnError(PortInUse)` for a fixed port another daemon leases or another process
        has bound. Whatever happens, the replica leases no port it does not hold."""
        spec, leases, owner = held.spec, self._leases, held.spec.id
        try:
            held.ports = process.pick_ports(
                spec.ports,
                previous=held.ports,
                taken=self._ports_taken(held) if spec.ports else set(),
                address=self._address,
                lease=lambda port: leases.take(port, owner=owner) is None,
                unlease=lambda port: leases.drop(port, owner=owner),
                dynamic=self._dynamic_ports,
            )
        finally:
            leases.keep(owner, held.ports.values())
        fixed = {n: p for n, p in held.ports.items() if spec.ports.get(n)}
        for name, port in fixed.items():
            holder = leases.take(port, owner=owner)
            if holder is not None:
                raise errors.SpawnError(
                    reason="PortInUse", message=f"port {port} ({name}) is leased by {holder}"
                )
        process.check_ports(fixed, address=self._address)

    def adopt(self, held: Replica, identity: procfs.Identity, *, started_at: float) -> bool:
        """Watch a running process as this replica's, keeping its recorded state.

        False if the process is not (or no longer) the one identified.
        """
        age_s = max(0.0, time.time() - started_at)
        try:
            proc = self._watch(
                held, identity, started_mono=asyncio.get_running_loop().time() - age_s
            )
        except ProcessLookupError:
            return False
        if not procfs.is_alive(identity):  # the pidfd pins the pid now: check once more
            proc.watch.detach()
            held.proc = None
            return False
        held.started_at = started_at
        if held.state != "stopping":
            check = held.spec.health_check
            healthy = held.healthy if held.state in ("running", "unhealthy") else None
            held.healthy = healthy if check is not None else None
            held.state = HEALTH_STATE[held.healthy] if check is not None else "running"
            if held.state != "unhealthy":
                held.reason = held.message = None
            if check is not None:
                self._start_health(held, proc, health.Status(healthy=held.healthy))
            remaining_s = None if held.spec.timeout_s is None else held.spec.timeout_s - age_s
            self._arm_timeout(held, proc, remaining_s=remaining_s)
        self._changed(held)
        return True

    def ended_unwatched(self, held: Replica, *, started_at: float) -> None:
        """The recorded process ended while no daemon watched it: an exit, code unknown."""
        self._after_exit(held, exit_code=None, uptime_s=time.time() - started_at)

    def resume_backoff(self, held: Replica) -> None:
        """Schedule the restart the previous daemon was waiting for."""
        delay_s = restart.retry_delay_s(
            held.consecutive, held.spec.restart, spawn_failed=held.state == "failed"
        )
        loop = asyncio.get_running_loop()
        held.restart_timer = loop.call_later(delay_s, self._restart_due, held)

    def _watch(self, held: Replica, identity: procfs.Identity, *, started_mono: float) -> Proc:
        proc: Proc | None = None

        def exited(code: int | None) -> None:
            if proc is not None:
                self._on_exit(held, proc, code)

        watch = process.Watch.open(
            asyncio.get_running_loop(), pid=identity.pid, pgid=identity.pgid, on_exit=exited
        )
        proc = Proc(identity=identity, watch=watch, started_mono=started_mono)
        held.proc = proc
        return proc

    # --- exits and restarts -----------------------------------------------------------------

    def _on_exit(self, held: Replica, proc: Proc, exit_code: int | None) -> None:
        if held.proc is not proc:
            return
        held.proc = None
        held.cancel_activity()
        held.exit_code = exit_code
        if proc.exited is not None and not proc.exited.done():
            proc.exited.set_result(None)
        if held.stopping:
            self._changed(held)
            return
        uptime_s = asyncio.get_running_loop().time() - proc.started_mono
        reason = detail = None
        if proc.timed_out:
            reason, detail = "Timeout", f"ran longer than its timeout of {held.spec.timeout_s:g}s"
        try:
            self._after_exit(
                held, exit_code=exit_code, uptime_s=uptime_s, reason=reason, detail=detail
            )
        except Exception as exc:  # the exit-callback boundary: report it, do not wedge
            log.exception("handling the exit of %s failed", held.id)
            held.state, held.reason, held.message = "failed", "SupervisorError", repr(exc)
            self._changed(held)

    def _spawn_failed(self, held: Replica, reason: str, message: str) -> None:
        log.warning("cannot start %s: %s: %s", held.id, reason, message)
        self._after_exit(
            held, exit_code=None, uptime_s=0.0, reason=reason, detail=message, spawn_failed=True
        )

    def _after_exit(
        self,
        held: Replica,
        *,
        exit_code: int | None,
        uptime_s: float,
        reason: str | None = None,
        detail: str | None = None,
        spawn_failed: bool = False,
    ) -> None:
        decision = restart.after_exit(
            restart.Exit(
                kind=held.spec.type,
                restart=held.spec.restart,
                exit_code=exit_code,
                consecutive=held.consecutive,
                uptime_s=uptime_s,
                reason=reason,
                detail=detail,
                spawn_failed=spawn_failed,
            )
        )
        held.consecutive = decision.consecutive
        held.state, held.reason, held.message = decision.state, decision.reason, decision.message
        held.healthy = None
        if decision.restart and decision.delay_s <= 0:
            self.spawn(held)  # the first crash: respawn in this very callback
            return
        if decision.restart:
            loop = asyncio.get_running_loop()
            held.restart_timer = loop.call_later(decision.delay_s, self._restart_due, held)
        self._changed(held)

    def _restart_due(self, held: Replica) -> None:
        held.restart_timer = None
        if held.stopping or held.proc is not None:
            return
        try:
            self.spawn(held)
        except Exception as exc:  # the timer-callback boundary: report it, do not wedge
            log.exception("restarting %s failed", held.id)
            held.state, held.reason, held.message = "failed", "SupervisorError", repr(exc)
            self._changed(held)

    # --- health and timeouts ----------------------------------------------------------------

    def _start_health(self, held: Replica, proc: Proc, initial: health.Status) -> None:
        check = held.spec.health_check
        if check is None:
            return
        try:
            env, cwd = self.environment(held)
            run_as = self.run_as(held)
        except (errors.SpawnError, OSError) as exc:  # only on adoption: a spawn prepared it
            log.warning("cannot health-check %s: %s", held.id, exc)
            return
        target = health.Target(
            address=self._address, ports=held.ports, env=env, cwd=cwd, run_as=run_as
        )

        def on_result(status: health.Status, error: str | None) -> None:
            self._on_health(held, proc, status, error)

        held.health_task = asyncio.get_running_loop().create_task(
            health.watch(
                check, target, started_mono=proc.started_mono, initial=initial, on_result=on_result
            ),
            name=f"health {held.id}",
        )

    def _on_health(
        self, held: Replica, proc: Proc, status: health.Status, error: str | None
    ) -> None:
        if held.proc is not proc or held.stopping:
            return
        state = HEALTH_STATE[status.healthy]
        reason = "Unhealthy" if status.healthy is False else None
        message = None if status.healthy is True else error
        if (held.state, held.healthy, held.reason, held.message) == (
            state,
            status.healthy,
            reason,
            message,
        ):
            return
        held.state, held.healthy, held.reason, held.message = state, status.healthy, reason, message
        self._changed(held)

    def _arm_timeout(self, held: Replica, proc: Proc, *, remaining_s: float | None) -> None:
        """A job running past its `timeout_s` is killed; its exit is a "Timeout" failure."""
        if held.spec.type != "job" or remaining_s is None:
            return

        def expired() -> None:
            if held.proc is proc:
                proc.timed_out = True
                process.kill_group(proc.identity.pgid, signal.SIGKILL)

        proc.timer = asyncio.get_running_loop().call_later(max(0.0, remaining_s), expired)

    # --- stopping ---------------------------------------------------------------------------

    def stop(self, held: Replica) -> asyncio.Task[None]:
        """Begin a graceful stop: state "stopping" and SIGTERM to the group right now;
        the grace, the SIGKILL and the `stopped` callback follow in the returned task."""
        held.stopping = True
        held.cancel_activity()
        proc = held.proc
        if proc is not None:
            held.state, held.healthy, held.reason = "stopping", None, None
            held.message = f"SIGTERM sent; SIGKILL after {held.spec.stop_grace_s:g}s"
            proc.exited = proc.exited or asyncio.get_running_loop().create_future()
            process.kill_group(proc.identity.pgid, signal.SIGTERM)
            self._changed(held)
        return asyncio.get_running_loop().create_task(
            self._finish_stop(held, proc), name=f"stop {held.id}"
        )

    async def _finish_stop(self, held: Replica, proc: Proc | None) -> None:
        if proc is not None and proc.exited is not None:
            exited = proc.exited
            if not await _wait(exited, held.spec.stop_grace_s):
                process.kill_group(proc.identity.pgid, signal.SIGKILL)
                if not await _wait(exited, KILL_WAIT_S):
                    pid = proc.identity.pid
                    log.error("pid %d of %s survived SIGKILL; forgetting it", pid, held.id)
                    proc.watch.detach()
        self._stopped(held)

    @staticmethod
    def detach(held: Replica) -> None:
        """Stop watching, leave the process running (the daemon is closing)."""
        held.cancel_activity()
        if held.proc is not None:
            held.proc.watch.detach()


async def _wait(future: asyncio.Future[None], timeout_s: float) -> bool:
    """True once `future` is done, False if `timeout_s` passed first."""
    try:
        await asyncio.wait_for(asyncio.shield(future), timeout_s)
    except TimeoutError:
        return future.done()
    return True
