"""The node daemon: `armillary node`. Connects to the server, runs what it is assigned.

One loop per connection: send `hello` (capacity from psutil or the options, labels,
and the state of every replica it already runs — adopted after a restart), then
concurrently apply each `assignments` message to the supervisor (the first is the
full set, level-triggered; `assignments.delta` messages after it carry what
changed), send a `report` of the replicas that changed since the last one whenever
any does (debounced), send a `heartbeat` with CPU, memory and disk every interval,
and serve log and exec streams. A lost connection, or a session the server closes
with a code outside `protocol.FATAL_CLOSE_CODES` (such as `CLOSE_TRY_AGAIN` when its
store hiccups during `hello`), is retried with capped, jittered backoff that starts
over only once a `welcome` arrives; replicas keep running meanwhile. A fatal close
code raises `SessionRefused` and the daemon exits. Never opens the database; the
server is reached only over its API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import psutil
import websockets
from websockets.asyncio.client import ClientConnection

from armillary import protocol
from armillary.errors import PermanentError, ProtocolError, SessionRefused
from armillary.node import identity, logstream, meter, process, tenancy
from armillary.node.supervisor import Supervisor

log = logging.getLogger("armillary.node")
REPORT_DEBOUNCE_S = 0.005
RECONNECT_FIRST_S = 0.1


def _close_code(exc: BaseException) -> int | None:
    received = getattr(exc, "rcvd", None)
    return getattr(received, "code", None)


CHECKPOINT_INTERVAL_S = 2.0
RECONNECT_MAX_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    server: str  # http(s)://host:port of the server
    token: str
    name: str = field(default_factory=socket.gethostname)
    labels: dict[str, str] = field(default_factory=dict)
    data_dir: Path = Path(".armillary/node")
    address: str = "127.0.0.1"
    stop_workloads_on_exit: bool = False
    # where tenant users' uids come from when the daemon runs as root; None: all tenants
    # run as the daemon's user
    tenant_uids: tenancy.UidRange | None = tenancy.DEFAULT_RANGE
    takeover: bool = False  # replace a live daemon of the same name (the server audits it)
    port_leases: Path | None = None  # host-wide port leases; None: leases.default_directory()
    dynamic_ports: range = process.DYNAMIC_PORTS  # where ports of 0 are picked from
    # What the node offers the scheduler; None: the machine's own (psutil). Lower it to
    # keep room for what else runs on the machine, as a kubelet's allocatable does.
    cpu_millicores: int | None = None
    memory_mb: int | None = None


def websocket_url(server: str) -> str:
    base = server.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/api/v1/nodes/connect"
    return "ws://" + base.removeprefix("http://") + "/api/v1/nodes/connect"


def capacity(
    *, cpu_millicores: int | None = None, memory_mb: int | None = None
) -> protocol.Capacity:
    """What the node offers the scheduler: the declared amounts, else the machine's CPU
    cores × 1000 and total memory. Only placement reads it; replicas are not limited."""
    return protocol.Capacity(
        cpu_millicores=cpu_millicores or (psutil.cpu_count() or 1) * 1000,
        memory_mb=memory_mb or psutil.virtual_memory().total // (1024 * 1024),
    )


class Daemon:
    def __init__(self, options: Options) -> None:
        self.options = options
        self._changed = asyncio.Event()
        self._dirty: set[str] = set()  # allocations whose report the server has not had
        self.supervisor = Supervisor(
            data_dir=options.data_dir,
            address=options.address,
            on_change=self._mark,
            tenant_uids=options.tenant_uids,
            port_leases=options.port_leases,
            dynamic_ports=options.dynamic_ports,
        )
        self.checkpoints = logstream.Checkpoints()
        self._meter = meter.Meter()
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._seq = 0
        self._reconnect_s = RECONNECT_FIRST_S  # back to the first delay on each welcome
        self._instance = ""

    def _mark(self, allocation_id: str) -> None:
        self._dirty.add(allocation_id)
        self._changed.set()

    async def run(self) -> None:
        """Run until cancelled; then leave (or stop) the replicas as the options say."""
        await self.supervisor.start()  # holds the data dir's lock: one daemon per id
        self._instance = identity.load_or_create(self.options.data_dir)
        background = asyncio.create_task(self._checkpoint_logs())
        try:
            await self._connect_forever()
        finally:
            background.cancel()
            for task in self._streams.values():
                task.cancel()
            await self.supervisor.close(stop_workloads=self.options.stop_workloads_on_exit)

    async def _connect_forever(self) -> None:
        url = websocket_url(self.options.server)
        while True:
            try:
                async with websockets.connect(
                    url, max_size=16 * 1024 * 1024, open_timeout=10
                ) as ws:
                    await self._session(ws)
            except* websockets.ConnectionClosed as group:
                code = _close_code(group.exceptions[0])
                if code in protocol.FATAL_CLOSE_CODES:
                    # Retrying cannot help: a bad token, a broken message, or another daemon
                    # now runs under this node name. Stop, and say why.
                    reason = getattr(getattr(group.exceptions[0], "rcvd", None), "reason", "")
                    raise SessionRefused(
                        f"the server closed the session: {code} "
                        f"{protocol.FATAL_CLOSE_CODES[code]}" + (f" ({reason})" if reason else "")
                    ) from None
                log.warning("connection to %s lost (%s); retrying", url, group.exceptions[0])
            except* ProtocolError as group:
                # This server speaks another protocol (or a broken one): reconnecting
                # would only meet the same message.
                raise SessionRefused(
                    f"the server sent a message this daemon does not accept: {group.exceptions[0]}"
                ) from None
            except* (OSError, websockets.WebSocketException, TimeoutError) as group:
                # The session's tasks fail together when the server goes away; anything
                # else raised in them propagates: that is a bug, not a lost connection.
                log.warning("connection to %s lost (%s); retrying", url, group.exceptions[0])
            delay_s = self._reconnect_s * (0.5 + random.random())  # noqa: S311 - jitter
            await asyncio.sleep(delay_s)
            self._reconnect_s = min(RECONNECT_MAX_S, self._reconnect_s * 2)

    async def _send(self, ws: ClientConnection, kind: str, payload: dict[str, Any]) -> None:
        self._seq += 1
        await ws.send(json.dumps({"type": kind, "seq": self._seq, "payload": payload}))

    async def _session(self, ws: ClientConnection) -> None:
        self._dirty.clear()  # the hello reports everything
        hello = protocol.Hello(
            node=self.options.name,
            token=self.options.token,
            address=self.options.address,
            capacity=capacity(
                cpu_millicores=self.options.cpu_millicores, memory_mb=self.options.memory_mb
            ),
            labels=self.options.labels,
            running=self.supervisor.reports(),
            isolation=self.supervisor.isolation,
            instance=self._instance,
            takeover=self.options.takeover,
        )
        await self._send(ws, "hello", protocol.encode(hello))
        first = protocol.parse(await ws.recv())
        if first.type != "welcome":
            raise websockets.InvalidMessage(f"expected welcome, got {first.type}")
        welcome = protocol.decode(protocol.Welcome, first.payload)
        self._reconnect_s = RECONNECT_FIRST_S
        log.info("connected to %s as node %s", self.options.server, welcome.node)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._receive(ws))
            group.create_task(self._report(ws))
            group.create_task(self._heartbeat(ws, welcome.heartbeat_interval_s))

    async def _receive(self, ws: ClientConnection) -> None:
        async for raw in ws:
            envelope = protocol.parse(raw)
            if envelope.type == "assignments":
                assignments = protocol.decode(protocol.Assignments, envelope.payload)
                await self.supervisor.converge(assignments.allocations)
            elif envelope.type == "assignments.delta":
                delta = protocol.decode(
                    protocol.AssignmentsDelta, envelope.payload, path="assignments.delta"
                )
                await self.supervisor.update(delta.add, delta.remove)
            elif envelope.type == "logs.open":
                logs = protocol.decode(protocol.LogsOpen, envelope.payload, path="logs.open")
                self._start_stream(ws, logs.stream, partial(self._logs, ws, logs), protocol.LogsEnd)
            elif envelope.type == "exec.open":
                command = protocol.decode(protocol.ExecOpen, envelope.payload, path="exec.open")
                self._start_stream(
                    ws, command.stream, partial(self._exec, ws, command), protocol.ExecEnd
                )
            elif envelope.type == "stream.close":
                closed = protocol.decode(protocol.StreamClose, envelope.payload)
                task = self._streams.pop(closed.stream, None)
                if task is not None:
                    task.cancel()
            else:
                log.warning("unknown message type %r from the server", envelope.type)

    async def _report(self, ws: ClientConnection) -> None:
        while True:
            await self._changed.wait()
            await asyncio.sleep(REPORT_DEBOUNCE_S)  # let a burst of changes land in one report
            self._changed.clear()
            dirty, self._dirty = self._dirty, set()
            held = (self.supervisor.report(i) for i in sorted(dirty))
            reports = [protocol.encode(r) for r in held if r is not None]
            if reports:
                self.supervisor.persist()  # on disk before the server hears of it
                await self._send(ws, "report", {"replicas": reports})

    async def _heartbeat(self, ws: ClientConnection, interval_s: float) -> None:
        psutil.cpu_percent(interval=None)  # the first call only primes the counter
        while True:
            await asyncio.sleep(interval_s)
            memory = psutil.virtual_memory()
            usage = protocol.Usage(
                cpu_percent=psutil.cpu_percent(interval=None),
                memory_used_mb=(memory.total - memory.available) // (1024 * 1024),
                memory_total_mb=memory.total // (1024 * 1024),
                disk_used_percent=psutil.disk_usage(str(self.options.data_dir)).percent,
            )
            pids = {r.id: r.pid for r in self.supervisor.reports() if r.pid is not None}
            beat = protocol.Heartbeat(
                usage=usage, replicas=self._meter.measure(pids), sent_at=time.time()
            )
            await self._send(ws, "heartbeat", protocol.encode(beat))

    async def _chunk(self, ws: ClientConnection, chunk: protocol.StreamChunk) -> None:
        await self._send(ws, protocol.STREAM_KINDS[type(chunk)], protocol.encode(chunk))

    def _start_stream(
        self,
        ws: ClientConnection,
        stream: str,
        work: Callable[[], Awaitable[None]],
        end: type[protocol.LogsEnd | protocol.ExecEnd],
    ) -> None:
        async def guarded() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("stream %s failed", stream)
                await self._chunk(ws, end(stream=stream, error=str(exc)))
            finally:
                self._streams.pop(stream, None)

        self._streams[stream] = asyncio.create_task(guarded())

    async def _logs(self, ws: ClientConnection, opened: protocol.LogsOpen) -> None:
        stream, allocation = opened.stream, opened.allocation
        path = self.supervisor.log_path(allocation)
        if not path.exists():
            await self._chunk(ws, protocol.LogsEnd(stream=stream, error="no output yet"))
            return
        if opened.previous:
            await self._previous_logs(ws, opened, path)
            return
        until: int | None = None  # a tail not followed ends where it was counted
        if opened.since_s is not None:
            start = self.checkpoints.offset_since(allocation, opened.since_s)
        elif opened.tail is not None:
            start, until = logstream.tail_offset(path, opened.tail)
        else:
            start = 0
        stamper = logstream.Stamper(partial(self._seen_at, allocation))
        position = start
        chunks = logstream.read_bytes(path, start=start, follow=opened.follow, until=until)
        async for chunk, position in chunks:
            text = (
                stamper.feed(chunk, end=position)
                if opened.timestamps
                else chunk.decode("utf-8", errors="replace")
            )
            if text:
                await self._chunk(ws, protocol.LogsData(stream=stream, data=text))
        if rest := stamper.flush(end=position):
            await self._chunk(ws, protocol.LogsData(stream=stream, data=rest))
        await self._chunk(ws, protocol.LogsEnd(stream=stream))

    def _seen_at(self, allocation: str, offset: int) -> float:
        seen = self.checkpoints.seen_at(allocation, offset)
        return time.time() if seen is None else seen

    async def _previous_logs(
        self, ws: ClientConnection, opened: protocol.LogsOpen, path: Path
    ) -> None:
        """The last finished run's output (`logstream.previous_run`), then the end."""
        stream = opened.stream
        run = await asyncio.to_thread(logstream.previous_run, path)
        if run is None:
            error = "no previous run is kept: the replica has not restarted since its log began"
            await self._chunk(ws, protocol.LogsEnd(stream=stream, error=error))
            return
        if opened.timestamps:
            rotated = logstream.Stamper(lambda _: run.rotated_at)
            live = logstream.Stamper(partial(self._seen_at, opened.allocation))
            end = run.live_start + len(run.live)
            text = rotated.feed(run.rotated, end=len(run.rotated))
            text += rotated.flush(end=len(run.rotated)) + live.feed(run.live, end=end)
            text += live.flush(end=end)
        else:
            text = (run.rotated + run.live).decode("utf-8", errors="replace")
        if opened.tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-opened.tail :] if opened.tail else [])
        for at in range(0, len(text), logstream.CHUNK_BYTES // 4):  # ≤ 4 bytes a character
            data = text[at : at + logstream.CHUNK_BYTES // 4]
            await self._chunk(ws, protocol.LogsData(stream=stream, data=data))
        await self._chunk(ws, protocol.LogsEnd(stream=stream))

    async def _exec(self, ws: ClientConnection, opened: protocol.ExecOpen) -> None:
        stream, allocation = opened.stream, opened.allocation
        if self.supervisor.spec(allocation) is None:
            end = protocol.ExecEnd(stream=stream, error="no such replica here")
            await self._chunk(ws, end)
            return
        env, cwd = self.supervisor.environment(allocation)
        try:
            child = await asyncio.create_subprocess_exec(
                *opened.command,
                env=env,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                **process.credentials(self.supervisor.run_as(allocation)),  # as the replica
            )
        except OSError as exc:
            end = protocol.ExecEnd(stream=stream, exit_code=127, error=str(exc))
            await self._chunk(ws, end)
            return

        async def pump(
            reader: asyncio.StreamReader | None, fd: Literal["stdout", "stderr"]
        ) -> None:
            while reader is not None and (chunk := await reader.read(CHUNK)):
                data = base64.b64encode(chunk).decode("ascii")
                await self._chunk(ws, protocol.ExecData(stream=stream, fd=fd, data=data))

        timeout_s = opened.timeout_s
        try:
            async with asyncio.timeout(timeout_s or None):
                await asyncio.gather(pump(child.stdout, "stdout"), pump(child.stderr, "stderr"))
                code = await child.wait()
        except TimeoutError:
            await _kill_group(child)
            end = protocol.ExecEnd(stream=stream, error=f"timed out after {timeout_s}s")
            await self._chunk(ws, end)
            return
        except asyncio.CancelledError:  # the client went away: leave nothing running
            await _kill_group(child)
            raise
        await self._chunk(ws, protocol.ExecEnd(stream=stream, exit_code=code))

    async def _checkpoint_logs(self) -> None:
        while True:
            for allocation_id in self.supervisor.held_ids():
                self.checkpoints.record(allocation_id, self.supervisor.log_path(allocation_id))
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)


CHUNK = 64 * 1024


async def _kill_group(child: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    await child.wait()


def run(options: Options) -> None:
    """`armillary node`: run until SIGTERM/SIGINT."""

    async def main() -> None:
        daemon = Daemon(options)
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        started = time.monotonic()
        try:
            await task
        except asyncio.CancelledError:
            log.info("node stopped after %.0fs", time.monotonic() - started)

    try:
        asyncio.run(main())
    except* PermanentError as group:  # a refused session; a data dir tenants cannot reach
        log.error("%s", group.exceptions[0])
        raise SystemExit(1) from None
