"""The node state file: what the supervisor holds, so a restarted daemon can adopt it.

`<data_dir>/node-state.json` is written by the supervisor through `Writer` (debounced,
so a converge of 100 replicas is one or two writes) and read once by `load` in
`Supervisor.start()`.

Invariants: the file is replaced atomically (tmp + os.replace), so a reader sees the
old or the new version, never half of one; a change is on disk within `delay_s`
(20 ms) unless the disk fails, in which case the write is retried. No fsync: the file
must survive the daemon being killed, not the machine losing power, and a power loss
ends every replica anyway. A file that cannot be read is moved aside, not trusted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from armillary import errors, protocol
from armillary.node.procfs import Identity
from armillary.protocol import AllocationSpec, ReplicaReport

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FILE_NAME = "node-state.json"
RETRY_AFTER_ERROR_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One held allocation as the daemon last saw it."""

    spec: AllocationSpec
    report: ReplicaReport  # state, pid, restarts, started_at, healthy, last exit
    process: Identity | None  # the process it ran, when one was running
    consecutive: int  # consecutive failures, for the backoff
    restart_pending: bool  # waiting out a backoff when the daemon stopped
    spawned: bool  # a process was started at least once (later starts count as restarts)


def _encode(entry: Entry) -> dict[str, Any]:
    process = entry.process
    return {
        "spec": protocol.encode(entry.spec),
        "report": protocol.encode(entry.report),
        "process": None
        if process is None
        else {
            "pid": process.pid,
            "pgid": process.pgid,
            "start_ticks": process.start_ticks,
            "create_time": process.create_time,
            "boot_id": process.boot_id,
        },
        "consecutive_failures": entry.consecutive,
        "restart_pending": entry.restart_pending,
        "spawned": entry.spawned,
    }


def _decode(raw: dict[str, Any]) -> Entry:
    process = raw.get("process")
    return Entry(
        spec=protocol.decode(AllocationSpec, raw["spec"]),
        report=protocol.decode(ReplicaReport, raw["report"]),
        process=None
        if process is None
        else Identity(
            pid=int(process["pid"]),
            pgid=int(process["pgid"]),
            start_ticks=int(process["start_ticks"]),
            create_time=float(process["create_time"]),
            boot_id=str(process["boot_id"]),
        ),
        consecutive=int(raw.get("consecutive_failures", 0)),
        restart_pending=bool(raw.get("restart_pending", False)),
        spawned=bool(raw.get("spawned", process is not None)),
    )


def dump(path: Path, entries: list[Entry]) -> None:
    """Write `entries` atomically, readable by the daemon's user only: the specs carry
    the replicas' env, values of Secrets included."""
    body = {"version": FORMAT_VERSION, "allocations": [_encode(e) for e in entries]}
    tmp = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "w") as sink:
        sink.write(json.dumps(body, separators=(",", ":")))
    os.chmod(tmp, 0o600)  # a file left by an older daemon keeps its mode through O_CREAT
    os.replace(tmp, path)


def load(path: Path) -> list[Entry]:
    """The entries on disk; [] without a file. Unreadable entries are logged and skipped."""
    try:
        body = json.loads(path.read_text())
        if body.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown format version {body.get('version')!r}")
        raws = list(body["allocations"])
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
        log.error("state file %s is unreadable (%s); moved to %s", path, exc, aside)
        os.replace(path, aside)
        return []
    entries = []
    for i, raw in enumerate(raws):
        try:
            entries.append(_decode(raw))
        except (KeyError, TypeError, ValueError, errors.ProtocolError) as exc:
            log.error("state file %s: skipping allocations[%d]: %s", path, i, exc)
    return entries


class Writer:
    """Debounced writes of `collect()` to `path`: at most one per `delay_s`."""

    def __init__(
        self, path: Path, collect: Callable[[], list[Entry]], *, delay_s: float = 0.02
    ) -> None:
        self.path = path
        self._collect = collect
        self._delay_s = delay_s
        self._pending: asyncio.TimerHandle | None = None

    def mark_dirty(self) -> None:
        """Something changed: write within `delay_s` (changes meanwhile share the write)."""
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self._delay_s, self._write)

    def flush(self) -> None:
        """Write now if anything changed since the last write."""
        if self._pending is not None:
            self._pending.cancel()
            self._write()

    def cancel(self) -> None:
        """Forget a pending write (the caller writes the final state itself)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _write(self) -> None:
        self._pending = None
        try:
            dump(self.path, self._collect())
        except OSError:  # a full or failing disk: keep serving, retry
            log.exception("writing the state file %s failed; retrying", self.path)
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(RETRY_AFTER_ERROR_S, self._write)
