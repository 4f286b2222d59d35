"""The node supervisor against real processes: spawn, restart, health, stop, adoption.

Every test runs its own `Supervisor` on a fresh data dir and waits on conditions with
deadlines (`wait_for_async`), never on fixed sleeps; nothing asserts a wall-clock duration
(the machine is shared). Backoffs and probe intervals are tiny so the module is fast.
Processes are found by their process group (a replica's pgid is its pid) or by the
ARMILLARY_ALLOCATION marker in their environment; zombies do not count as alive (pid
1 in some sandboxes never reaps the orphans it inherits).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import psutil
import pytest

from armillary import errors
from armillary.node import procfs, statefile
from armillary.node.supervisor import Supervisor
from armillary.protocol import (
    AllocationSpec,
    ExecProbe,
    HealthCheck,
    HttpProbe,
    ReplicaReport,
    Restart,
    TcpProbe,
)
from tests.support.ports import free_port
from tests.support.processes import alive, processes_with
from tests.support.waiting import wait_for_async

FAST = Restart(backoff_initial_s=0.05, backoff_max_s=0.4, crash_loop_after=3)
SLEEP = ["sleep", "1000"]
PY = sys.executable
_counter = itertools.count()


def make_spec(*, command: list[str], **fields: Any) -> AllocationSpec:
    """An allocation with a unique id (the id doubles as a process marker)."""
    index = next(_counter)
    values: dict[str, Any] = {
        "id": f"alloc-{uuid.uuid4().hex[:10]}",
        "tenant": "acme",
        "component": "web",
        "name": f"web-acme-{index}",
        "index": index,
        "type": "service",
        "spec_hash": "h1",
        "command": command,
        "restart": FAST,
        "stop_grace_s": 2,
    }
    values.update(fields)
    return AllocationSpec(**values)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and alive(pid):
                members.append(pid)
        except ProcessLookupError:
            continue
    return members


def processes_of(allocation_id: str) -> list[int]:
    """Live processes carrying ARMILLARY_ALLOCATION=<allocation_id>."""
    return [process.pid for process in processes_with("ARMILLARY_ALLOCATION", allocation_id)]


def kill_and_reap(pid: int) -> None:
    """SIGKILL a child of this test process and reap it."""
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def sleeper(*, log: Path | None = None) -> subprocess.Popen[bytes]:
    """A `sleep` in its own session, like a replica; writing to `log` if given."""
    if log is None:
        return subprocess.Popen(SLEEP, start_new_session=True)
    with log.open("ab") as out:
        return subprocess.Popen(SLEEP, stdout=out, stderr=out, start_new_session=True)


def start_stranger(*, not_in_tick: int) -> subprocess.Popen[bytes]:
    """A `sleep` unrelated to any supervisor, started after clock tick `not_in_tick`.

    Start times tick every 10 ms, and a real pid reuse never happens within one tick; this
    test reuses a pid by editing the state file at once, so it steps past the tick.
    """
    while True:
        stranger = sleeper()
        seen = procfs.stat(stranger.pid)
        if seen is not None and seen.start_ticks != not_in_tick:
            return stranger
        stranger.kill()
        stranger.wait()


class Recorder:
    """`on_change` callback keeping every report seen, with its time."""

    def __init__(self) -> None:
        self.supervisor: Supervisor | None = None
        self.history: list[tuple[float, dict[str, ReplicaReport]]] = []

    def __call__(self, allocation_id: str) -> None:
        assert self.supervisor is not None
        now = time.monotonic()
        self.history.append((now, {r.id: r for r in self.supervisor.reports()}))

    def states(self, allocation_id: str) -> list[str]:
        """The states the allocation went through, repeats collapsed."""
        states = [seen[allocation_id].state for _, seen in self.history if allocation_id in seen]
        return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]

    def restart_times(self, allocation_id: str) -> dict[int, float]:
        """When each restart count was first reported (0: the first spawn)."""
        times: dict[int, float] = {}
        for at, seen in self.history:
            report = seen.get(allocation_id)
            if report is not None and report.pid is not None:
                times.setdefault(report.restarts, at)
        return times


class Make(Protocol):
    def __call__(
        self, data_dir: Path | None = None, **options: Any
    ) -> tuple[Supervisor, Recorder]: ...


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    """Build supervisors (with recorders); every one is closed with its workloads at the end."""
    made: list[Supervisor] = []

    def build(data_dir: Path | None = None, **options: Any) -> tuple[Supervisor, Recorder]:
        recorder = Recorder()
        supervisor = Supervisor(
            data_dir=data_dir or tmp_path / "node", on_change=recorder, **options
        )
        recorder.supervisor = supervisor
        made.append(supervisor)
        return supervisor, recorder

    yield build
    for supervisor in reversed(made):
        await supervisor.close(stop_workloads=True)


async def started(
    make: Make, *specs: AllocationSpec, **options: Any
) -> tuple[Supervisor, Recorder]:
    supervisor, recorder = make(**options)
    await supervisor.start()
    await supervisor.converge(list(specs))
    return supervisor, recorder


def report(supervisor: Supervisor, allocation_id: str) -> ReplicaReport | None:
    return next((r for r in supervisor.reports() if r.id == allocation_id), None)


def state_of(supervisor: Supervisor, allocation_id: str) -> str | None:
    found = report(supervisor, allocation_id)
    return found.state if found is not None else None


def current(supervisor: Supervisor, allocation_id: str) -> ReplicaReport:
    found = report(supervisor, allocation_id)
    assert found is not None, f"{allocation_id} is not held"
    return found


# --- spawning -----------------------------------------------------------------------------


async def test_spawn_env_cwd_ports_and_log(
    make: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAEMON_ONLY_SECRET", "must-not-leak")
    (tmp_path / "work").mkdir()
    script = (
        "import json, os, sys; "
        "json.dump({'env': dict(os.environ), 'cwd': os.getcwd()}, open('seen.json', 'w')); "
        "print('hello from stdout', flush=True); print('hello from stderr', file=sys.stderr); "
        "import time; time.sleep(1000)"
    )
    web, metrics = free_port(), free_port()
    spec = make_spec(
        command=[PY, "-c", script],
        cwd="work",  # relative: to the daemon's working directory
        env={"LOG_LEVEL": "debug", "PORT": "overridden"},
        ports={"web": web, "metrics-admin": metrics},
    )
    supervisor, _ = await started(make, spec)
    seen_file = tmp_path / "work" / "seen.json"
    await wait_for_async(lambda: seen_file.exists() and seen_file.stat().st_size > 0)
    await wait_for_async(lambda: "hello from stderr" in supervisor.log_path(spec.id).read_text())

    seen = json.loads(seen_file.read_text())
    env = seen["env"]
    assert Path(seen["cwd"]) == tmp_path / "work"
    assert env["LOG_LEVEL"] == "debug"
    assert env["PORT"] == str(web)  # the first port wins over spec.env
    assert env["PORT_WEB"] == str(web)
    assert env["PORT_METRICS_ADMIN"] == str(metrics)
    assert env["ARMILLARY_TENANT"] == "acme"
    assert env["ARMILLARY_COMPONENT"] == "web"
    assert env["ARMILLARY_REPLICA"] == spec.name
    assert env["ARMILLARY_ALLOCATION"] == spec.id
    assert Path(env["ARMILLARY_DATA_DIR"]) == tmp_path / "node" / "tenants" / "acme"
    assert Path(env["ARMILLARY_DATA_DIR"]).is_dir()
    assert env["PATH"] == os.environ["PATH"]
    assert "DAEMON_ONLY_SECRET" not in env
    assert supervisor.environment(spec.id) == (
        {k: v for k, v in env.items() if k not in ("PWD", "LC_CTYPE")},
        tmp_path / "work",
    )
    assert supervisor.spec(spec.id) == spec

    log = supervisor.log_path(spec.id)
    assert log == tmp_path / "node" / "replicas" / spec.id / "output.log"
    assert "hello from stdout" in log.read_text()
    now = current(supervisor, spec.id)
    assert now.state == "running"
    assert now.healthy is None
    assert now.restarts == 0
    assert now.ports == {"web": web, "metrics-admin": metrics}
    assert now.started_at is not None and abs(now.started_at - time.time()) < 600
    assert now.pid is not None
    child = psutil.Process(now.pid)
    assert child.ppid() == os.getpid()  # a direct child of the daemon
    assert os.getpgid(now.pid) == now.pid  # its own process group …
    assert os.getsid(now.pid) == now.pid  # … and session
    with pytest.raises(errors.NotFound):
        supervisor.environment("no-such-allocation")


async def test_converge_is_idempotent_and_removing_an_allocation_stops_it(make: Make) -> None:
    keep, drop = make_spec(command=SLEEP), make_spec(command=SLEEP)
    supervisor, _ = await started(make, keep, drop)
    kept_pid, dropped_pid = current(supervisor, keep.id).pid, current(supervisor, drop.id).pid
    assert kept_pid is not None and dropped_pid is not None

    await supervisor.converge([keep, drop])  # same set: nothing happens
    assert [current(supervisor, a.id).pid for a in (keep, drop)] == [kept_pid, dropped_pid]

    await supervisor.converge([keep])
    await wait_for_async(lambda: report(supervisor, drop.id) is None)
    assert not alive(dropped_pid)
    assert current(supervisor, keep.id).pid == kept_pid
    assert current(supervisor, keep.id).restarts == 0


# --- restarts -----------------------------------------------------------------------------


async def test_kill_9_restarts_at_once(make: Make) -> None:
    spec = make_spec(command=SLEEP)
    supervisor, recorder = await started(make, spec)
    first = current(supervisor, spec.id).pid
    assert first is not None
    before = len(recorder.history)

    os.kill(first, signal.SIGKILL)
    await wait_for_async(lambda: current(supervisor, spec.id).pid not in (None, first))

    now = current(supervisor, spec.id)
    assert now.state == "running"
    assert now.restarts == 1
    assert now.exit_code == -9
    assert now.pid is not None and alive(now.pid)
    after_kill = [seen[spec.id].state for _, seen in recorder.history[before:]]
    assert "backoff" not in after_kill  # the first restart had no backoff
    assert all(seen[spec.id].pid is not None for _, seen in recorder.history[before:])


async def test_a_command_that_always_exits_crash_loops_with_growing_delays(make: Make) -> None:
    spec = make_spec(command=["sh", "-c", "exit 3"])
    supervisor, recorder = await started(make, spec)
    await wait_for_async(lambda: current(supervisor, spec.id).restarts >= 6)

    times = recorder.restart_times(spec.id)
    gaps = [times[n] - times[n - 1] for n in range(1, 7)]
    # restart n follows the n-th failure in a row: 0, then 0.05 doubling up to 0.4
    expected = [0.0, 0.05, 0.1, 0.2, 0.4, 0.4]
    for gap, delay in zip(gaps, expected, strict=True):
        assert gap >= delay * 0.9, (gaps, expected)
    assert gaps[-1] > gaps[0]
    states = recorder.states(spec.id)
    assert "backoff" in states
    assert "crashloop" in states
    assert states.index("backoff") < states.index("crashloop")
    loop_report = next(
        seen[spec.id] for _, seen in recorder.history if seen[spec.id].state == "crashloop"
    )
    assert loop_report.reason == "CrashLoop"
    assert loop_report.exit_code == 3
    assert "exited with code 3" in (loop_report.message or "")


async def test_job_succeeds_and_is_not_restarted(make: Make) -> None:
    spec = make_spec(command=["sh", "-c", "echo done"], type="job")
    supervisor, _ = await started(make, spec)
    await wait_for_async(lambda: state_of(supervisor, spec.id) == "succeeded")
    now = current(supervisor, spec.id)
    assert (now.exit_code, now.restarts, now.pid) == (0, 0, None)


async def test_job_fails_for_good_after_crash_loop_after_failures(make: Make) -> None:
    spec = make_spec(command=["sh", "-c", "exit 2"], type="job")  # crash_loop_after=3
    supervisor, _ = await started(make, spec)
    await wait_for_async(lambda: state_of(supervisor, spec.id) == "failed")
    now = current(supervisor, spec.id)
    assert (now.exit_code, now.restarts) == (2, 2)
    assert "gave up after 3 failures" in (now.message or "")


async def test_job_on_failure_runs_again_until_it_succeeds(make: Make, tmp_path: Path) -> None:
    marker = tmp_path / "tried-once"
    spec = make_spec(
        command=["sh", "-c", f'test -e "{marker}" && exit 0; touch "{marker}"; exit 1'],
        type="job",
        restart=Restart(policy="on-failure", backoff_initial_s=0.05),
    )
    supervisor, _ = await started(make, spec)
    await wait_for_async(lambda: state_of(supervisor, spec.id) == "succeeded")
    assert current(supervisor, spec.id).restarts == 1


async def test_job_timeout_kills_it_as_a_failure(make: Make) -> None:
    spec = make_spec(
        command=["sh", "-c", "sleep 1000 & sleep 1000"],
        type="job",
        timeout_s=0.2,
        restart=Restart(crash_loop_after=1),
    )
    supervisor, _ = await started(make, spec)
    pid = current(supervisor, spec.id).pid
    assert pid is not None
    await wait_for_async(lambda: state_of(supervisor, spec.id) == "failed")
    now = current(supervisor, spec.id)
    assert now.reason == "Timeout"
    assert now.exit_code == -9
    await wait_for_async(lambda: not group_members(pid))


@pytest.mark.parametrize("kind", ["service", "job"])
async def test_restart_never(make: Make, kind: str) -> None:
    spec = make_spec(command=["sh", "-c", "exit 4"], type=kind, restart=Restart(policy="never"))
    supervisor, _ = await started(make, spec)
    await wait_for_async(lambda: state_of(supervisor, spec.id) == "failed")
    now = current(supervisor, spec.id)
    assert (now.exit_code, now.restarts) == (4, 0)
    assert "code 4" in (now.message or "")


async def test_command_not_found_then_not_executable_then_fixed(make: Make, tmp_path: Path) -> None:
    program = tmp_path / "later.sh"
    spec = make_spec(command=[str(program), "x"])
    supervisor, _ = await started(make, spec)
    now = current(supervisor, spec.id)
    assert (now.state, now.reason) == ("failed", "CommandNotFound")
    assert str(program) in (now.message or "")

    program.write_text("#!/bin/sh\nexec sleep 1000\n")
    await wait_for_async(lambda: current(supervisor, spec.id).reason == "PermissionDenied")
    assert current(supervisor, spec.id).state == "failed"

    program.chmod(0o755)
    await wait_for_async(lambda: state_of(supervisor, spec.id) == "running")
    assert current(supervisor, spec.id).restarts == 0  # failed spawns are not restarts


async def test_a_missing_working_directory_is_its_own_reason(make: Make, tmp_path: Path) -> None:
    spec = make_spec(command=SLEEP, cwd=str(tmp_path / "nowhere"))
    supervisor, _ = await started(make, spec)
    now = current(supervisor, spec.id)
    assert (now.state, now.reason) == ("failed", "WorkingDirectoryNotFound")
    assert str(tmp_path / "nowhere") in (now.message or "")


async def test_port_in_use_fails_and_recovers_once_freed(make: Make) -> None:
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        spec = make_spec(command=SLEEP, ports={"http": port})
        supervisor, _ = await started(make, spec)
        now = current(supervisor, spec.id)
        assert (now.state, now.reason, now.pid) == ("failed", "PortInUse", None)
        assert str(port) in (now.message or "") and "http" in (now.message or "")
    finally:
        holder.close()
    await wait_for_async(lambda: state_of(supervisor, spec.id) == "running")


async def test_dynamic_ports_are_picked_free_by_the_node_and_reported(make: Make) -> None:
    from armillary.node.process import DYNAMIC_PORTS

    squatter = socket.socket()  # a foreign process holding the first free dynamic port
    for port in DYNAMIC_PORTS:
        try:
            squatter.bind(("127.0.0.1", port))
            break
        except OSError:
            continue
    squatter.listen()
    first = squatter.getsockname()[1]
    try:
        specs = [make_spec(command=SLEEP, ports={"http": 0, "admin": 0}) for _ in range(2)]
        supervisor, _ = await started(make, *specs)
        await wait_for_async(lambda: all(state_of(supervisor, s.id) == "running" for s in specs))
        picked = [current(supervisor, s.id).ports for s in specs]
        ports = [p for each in picked for p in each.values()]
        assert first not in ports  # skipped: taken by someone else
        assert len(set(ports)) == 4  # no two replicas of the node share one
        env, _ = supervisor.environment(specs[0].id)
        assert env["PORT"] == str(picked[0]["http"])
        assert env["PORT_ADMIN"] == str(picked[0]["admin"])
    finally:
        squatter.close()


def leave_time_wait_on(port: int) -> None:
    """Serve one connection on `port` and close it server-side first: TIME_WAIT remains,
    as after a crashed server that had clients (or health probes)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()
            client.recv(1)


async def test_time_wait_left_on_a_port_does_not_block_the_start(make: Make) -> None:
    port = free_port()
    leave_time_wait_on(port)
    spec = make_spec(command=SLEEP, ports={"http": port})
    supervisor, _ = await started(make, spec)
    assert state_of(supervisor, spec.id) == "running"


# --- health -------------------------------------------------------------------------------

HTTP_SERVER = [PY, "-m", "http.server", "--bind", "127.0.0.1"]


def quick(**fields: Any) -> HealthCheck:
    values: dict[str, Any] = {"interval_s": 0.05, "timeout_s": 1, "failure_threshold": 2}
    values.update(fields)
    return HealthCheck(**values)


@pytest.mark.parametrize(
    "check",
    [
        quick(http=HttpProbe(path="/", port="web")),
        quick(http=HttpProbe(path="/", expect_status=200), success_threshold=2),
        quick(tcp=TcpProbe()),
        quick(tcp=TcpProbe(port="web")),
    ],
    ids=["http-by-name", "http-expect-status", "tcp-first-port", "tcp-by-name"],
)
async def test_network_health_checks_pass(make: Make, check: HealthCheck, tmp_path: Path) -> None:
    port = free_port()
    spec = make_spec(
        command=["sh", "-c", f'exec {PY} -m http.server "$PORT" --bind 127.0.0.1'],
        ports={"web": port},
        cwd=str(tmp_path),
        health_check=check,
    )
    supervisor, recorder = await started(make, spec)
    assert state_of(supervisor, spec.id) == "starting"
    await wait_for_async(lambda: state_of(supervisor, spec.id) == "running", 20)
    assert current(supervisor, spec.id).healthy is True
    assert recorder.states(spec.id)[:1] == ["starting"]


async def test_exec_health_check_runs_in_the_replica_env_and_recovers(
    make: Make, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    spec = make_spec(
        command=SLEEP,
        cwd=str(tmp_path),
        health_check=quick(
            exec=ExecProbe(command=["sh", "-c", 'test "$ARMILLARY_TENANT" = acme && test -e ready'])
        ),
    )
    supervisor, _ = await started(make, spec)
    await wait_for_async(lambda: state_of(supervisor, spec.id) == "unhealthy")
    assert current(supervisor, spec.id).healthy is False
    assert "exited with code 1" in (current(supervisor, spec.id).message or "")

    ready.touch()
    await wait_for_async(lambda: state_of(supervisor, spec.id) == "running")
    assert current(supervisor, spec.id).healthy is True

    ready.unlink()
    await wait_for_async(lambda: state_of(supervisor, spec.id) == "unhealthy")
    now = current(supervisor, spec.id)
    assert (now.healthy, now.reason, now.restarts) == (False, "Unhealthy", 0)  # not restarted


async def test_a_health_check_that_never_passes_reports_why(make: Make, tmp_path: Path) -> None:
    port = free_port()
    not_found = make_spec(
        command=["sh", "-c", f'exec {PY} -m http.server "$PORT" --bind 127.0.0.1'],
        ports={"web": port},
        cwd=str(tmp_path),
        health_check=quick(http=HttpProbe(path="/no-such-page")),
    )
    nobody = make_spec(
        command=SLEEP, ports={"web": free_port()}, health_check=quick(tcp=TcpProbe())
    )
    supervisor, _ = await started(make, not_found, nobody)
    assert {state_of(supervisor, a.id) for a in (not_found, nobody)} == {"starting"}
    for spec, text in ((not_found, "returned 404"), (nobody, "onnect")):
        key = spec.id
        await wait_for_async(lambda: state_of(supervisor, key) == "unhealthy", 20)  # noqa: B023
        # A slow start can fail its first probes by refused connections; once the
        # server listens, the reason given is the real one.
        await wait_for_async(
            lambda: text in (current(supervisor, key).message or ""),  # noqa: B023
            20,
        )
        assert state_of(supervisor, spec.id) == "unhealthy"


# --- stopping -----------------------------------------------------------------------------


async def test_stop_kills_a_process_that_ignores_sigterm_after_the_grace(make: Make) -> None:
    script = (
        "import signal, sys, time\n"
        "def term(*_):\n    print('got SIGTERM, ignoring it', flush=True)\n"
        "signal.signal(signal.SIGTERM, term)\n"
        "print('ready', flush=True)\n"
        "while True:\n    time.sleep(1)\n"
    )
    spec = make_spec(command=[PY, "-c", script], stop_grace_s=0.3)
    supervisor, recorder = await started(make, spec)
    log = supervisor.log_path(spec.id)
    await wait_for_async(lambda: "ready" in log.read_text())
    pid = current(supervisor, spec.id).pid
    assert pid is not None

    await supervisor.converge([])
    assert state_of(supervisor, spec.id) == "stopping"
    await wait_for_async(lambda: report(supervisor, spec.id) is None)
    assert "got SIGTERM, ignoring it" in log.read_text()
    assert not alive(pid)
    assert recorder.states(spec.id)[-1] == "stopping"
    assert log.exists()  # the log outlives the replica


async def test_grandchildren_are_left_behind_neither_by_a_crash_nor_by_a_stop(
    make: Make,
) -> None:
    spec = make_spec(command=["sh", "-c", "sleep 1000 & sleep 1000"])
    supervisor, _ = await started(make, spec)
    first = current(supervisor, spec.id).pid
    assert first is not None
    await wait_for_async(lambda: len(group_members(first)) >= 2)

    os.kill(first, signal.SIGKILL)  # the leader only
    await wait_for_async(lambda: not group_members(first), what=lambda: group_members(first))
    await wait_for_async(lambda: current(supervisor, spec.id).pid not in (None, first))
    second = current(supervisor, spec.id).pid
    assert second is not None
    await wait_for_async(lambda: len(group_members(second)) >= 2)

    await supervisor.converge([])
    await wait_for_async(lambda: report(supervisor, spec.id) is None)
    await wait_for_async(lambda: not group_members(second), what=lambda: group_members(second))
    assert not processes_of(spec.id)


async def test_close_with_stop_workloads_leaves_nothing(make: Make, tmp_path: Path) -> None:
    specs = [
        make_spec(command=SLEEP),
        make_spec(command=["sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000"], stop_grace_s=0.2),
        make_spec(command=["sh", "-c", "exit 1"]),  # in backoff, no process
    ]
    supervisor, _ = await started(make, *specs)
    await wait_for_async(lambda: all(processes_of(s.id) for s in specs[:2]))
    await supervisor.close(stop_workloads=True)
    assert supervisor.reports() == []
    assert all(not processes_of(s.id) for s in specs)
    state = json.loads((tmp_path / "node" / "node-state.json").read_text())
    assert state["allocations"] == []


# --- adoption -----------------------------------------------------------------------------

TICKER = [PY, "-u", "-c", "import time\nwhile True:\n    print('tick'); time.sleep(0.02)"]


async def test_a_new_supervisor_adopts_what_the_previous_one_left_running(
    make: Make, tmp_path: Path
) -> None:
    sleeper = make_spec(command=SLEEP)
    ticker = make_spec(command=TICKER)
    checked = make_spec(command=SLEEP, health_check=quick(exec=ExecProbe(command=["true"])))
    first, _ = await started(make, sleeper, ticker, checked)
    os.kill(current(first, sleeper.id).pid or 0, signal.SIGKILL)  # so restarts is 1
    await wait_for_async(lambda: current(first, sleeper.id).restarts == 1)
    await wait_for_async(
        lambda: all(current(first, s.id).state == "running" for s in (sleeper, ticker, checked))
    )
    before = {r.id: r for r in first.reports()}
    await first.close(stop_workloads=False)
    assert all(alive(r.pid or 0) for r in before.values())

    second, _ = make()
    adopted = {r.id: r for r in await second.start()}
    assert set(adopted) == set(before)
    for allocation_id, was in before.items():
        now = adopted[allocation_id]
        assert (now.pid, now.restarts, now.state) == (was.pid, was.restarts, "running")
        assert now.started_at == was.started_at
    assert adopted[checked.id].healthy is True

    log = second.log_path(ticker.id)
    size = log.stat().st_size
    await wait_for_async(lambda: log.stat().st_size > size)  # it kept running, and logging

    await second.converge([sleeper, ticker, checked])  # the same set: nothing restarts
    assert {r.id: r.pid for r in second.reports()} == {i: r.pid for i, r in before.items()}

    old = before[sleeper.id].pid or 0
    os.kill(old, signal.SIGKILL)  # the adopted process's exit is seen
    await wait_for_async(lambda: current(second, sleeper.id).pid not in (None, old))
    now = current(second, sleeper.id)
    assert (now.restarts, now.exit_code, now.state) == (2, -9, "running")


async def test_a_recorded_pid_now_used_by_another_process_is_not_adopted(
    make: Make, tmp_path: Path
) -> None:
    spec = make_spec(command=SLEEP)
    first, _ = await started(make, spec)
    dead = current(first, spec.id).pid
    assert dead is not None
    await first.close(stop_workloads=False)
    kill_and_reap(dead)  # it is our child: once reaped, its pid is free

    path = tmp_path / "node" / "node-state.json"
    state = json.loads(path.read_text())
    (entry,) = state["allocations"]
    stranger = start_stranger(not_in_tick=entry["process"]["start_ticks"])
    try:
        # the stranger's pid, with the dead process's recorded start time
        entry["process"]["pid"] = entry["process"]["pgid"] = entry["report"]["pid"] = stranger.pid
        path.write_text(json.dumps(state))

        second, _ = make()
        (now,) = await second.start()
        assert now.pid not in (None, stranger.pid)  # treated as an exit: restarted
        assert now.restarts == 1
        assert now.state == "running"
        assert stranger.poll() is None  # and the stranger was left alone
    finally:
        stranger.kill()
        stranger.wait()


async def test_processes_missing_from_a_stale_state_file_are_adopted_or_killed(
    make: Make, tmp_path: Path
) -> None:
    wanted, unwanted = make_spec(command=SLEEP), make_spec(command=SLEEP)
    first, _ = await started(make, wanted, unwanted)
    pids = {r.id: r.pid for r in first.reports()}
    await first.close(stop_workloads=False)
    (tmp_path / "node" / "node-state.json").unlink()  # as if killed before the write

    second, _ = make()
    assert await second.start() == []
    await second.converge([wanted])
    assert current(second, wanted.id).pid == pids[wanted.id]  # found by its log file
    assert current(second, wanted.id).state == "running"
    await wait_for_async(lambda: not alive(pids[unwanted.id] or 0))  # nobody wanted it


async def test_a_respawn_the_state_file_missed_is_adopted_by_its_log_file(
    make: Make, tmp_path: Path
) -> None:
    spec = make_spec(command=SLEEP)
    first, _ = await started(make, spec)
    recorded = current(first, spec.id).pid
    assert recorded is not None
    log = first.log_path(spec.id)
    await first.close(stop_workloads=False)
    kill_and_reap(recorded)
    # what the daemon would have spawned just before being killed, too late for the file
    respawned = sleeper(log=log)
    try:
        second, _ = make()
        (now,) = await second.start()
        assert (now.pid, now.restarts, now.state) == (respawned.pid, 1, "running")
    finally:
        respawned.kill()
        respawned.wait()


DAEMON = """
import asyncio, json, sys
from pathlib import Path
from armillary.node import procfs, statefile
from armillary.node.supervisor import Supervisor
from armillary.protocol import AllocationSpec

async def main() -> None:
    data_dir = Path(sys.argv[1])
    supervisor = Supervisor(data_dir=data_dir)
    await supervisor.start()
    await supervisor.converge([
        AllocationSpec(id=f"{sys.argv[2]}-{i}", tenant="acme", component="sleeper",
                       name=f"sleeper-{i}", index=i, type="service", spec_hash="h",
                       command=["sleep", "1000"])
        for i in range(3)
    ])
    state = data_dir / "node-state.json"
    while True:  # on disk within ~20 ms; "ready" means "safe to kill -9 now"
        held = statefile.load(state)  # the snapshot and its journal
        if sum(1 for entry in held if entry.process) == 3:
            break
        await asyncio.sleep(0.005)
    print("ready", json.dumps({r.id: r.pid for r in supervisor.reports()}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_replicas_survive_a_kill_9_of_the_daemon_and_are_adopted(
    make: Make, tmp_path: Path
) -> None:
    data_dir = tmp_path / "node"
    marker = f"d{uuid.uuid4().hex[:8]}"
    daemon = await asyncio.create_subprocess_exec(
        PY,
        "-c",
        DAEMON,
        str(data_dir),
        marker,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert daemon.stdout is not None and daemon.stderr is not None
    try:
        line = await asyncio.wait_for(daemon.stdout.readline(), 60)
        if not line.startswith(b"ready "):
            raise AssertionError(f"daemon failed: {line!r} {await daemon.stderr.read()!r}")
        pids: dict[str, int] = json.loads(line[len("ready ") :])
    finally:
        daemon.kill()
        await daemon.wait()
    assert len(pids) == 3
    assert all(alive(pid) for pid in pids.values())  # not disturbed by the daemon's death

    supervisor, _ = make(data_dir)
    adopted = {r.id: r for r in await supervisor.start()}
    assert {i: r.pid for i, r in adopted.items()} == pids
    assert {r.state for r in adopted.values()} == {"running"}
    assert {r.restarts for r in adopted.values()} == {0}

    victim = f"{marker}-0"
    os.kill(pids[victim], signal.SIGKILL)  # not our child: the exit code is unknown
    await wait_for_async(lambda: current(supervisor, victim).pid not in (None, pids[victim]))
    now = current(supervisor, victim)
    assert (now.restarts, now.exit_code, now.state) == (1, None, "running")


async def test_one_data_dir_one_supervisor(make: Make) -> None:
    first, _ = make()
    await first.start()
    second, _ = make()
    with pytest.raises(errors.Conflict):
        await second.start()


# --- logs ---------------------------------------------------------------------------------


async def test_logs_rotate_by_size_and_keep_growing(make: Make) -> None:
    line = "x" * 99
    spec = make_spec(
        command=[
            PY,
            "-u",
            "-c",
            f"import time\nwhile True:\n    print('{line}'); time.sleep(0.005)",
        ]
    )
    supervisor, _ = await started(make, spec, log_max_bytes=2000, log_keep=2)
    log = supervisor.log_path(spec.id)
    first, second = log.with_name("output.log.1"), log.with_name("output.log.2")

    def size(path: Path) -> int:
        return path.stat().st_size if path.exists() else 0

    await wait_for_async(lambda: size(first) > 2000 and size(log) < size(first), 15)
    shrunk = size(log)
    await wait_for_async(lambda: size(log) > shrunk)  # the child's O_APPEND fd writes on
    await wait_for_async(lambda: size(second) > 2000, 15)  # the next rotation shifts .1 to .2
    assert not log.with_name("output.log.3").exists()
    assert set(first.read_text().splitlines()) == {line}


async def test_persist_writes_what_changed_now_not_within_the_delay(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon persists before it reports: what the server hears of is on disk."""
    monkeypatch.setattr("armillary.node.supervisor.STATE_WRITE_DELAY_S", 3600.0)
    spec = make_spec(command=SLEEP)
    supervisor, _ = make()
    await supervisor.start()
    supervisor.persist()  # what start() adopted (nothing), on disk
    await supervisor.converge([spec])
    await wait_for_async(lambda: current(supervisor, spec.id).pid is not None)
    path = supervisor._state.path
    assert [e.spec.id for e in statefile.load(path)] == []  # the write waits an hour
    supervisor.persist()
    [entry] = statefile.load(path)
    assert entry.report.pid == current(supervisor, spec.id).pid
