"""The node state file: what the supervisor holds, so a restarted daemon can adopt it.

Two files in the data dir, written by the supervisor through `Writer` and read once by
`load` in `Supervisor.start()`:

- `node-state.json`, the snapshot: every held allocation, and the `epoch` that names
  the journal continuing it;
- `node-state.journal`, that journal: a header line `{"epoch": ...}`, then one line
  per write, `{"seq": n, "put": [entry, ...], "drop": [id, ...]}` with n = 1, 2, ...

A change costs what changed: `Writer` (debounced, so a converge of 100 replicas is one
or two writes) appends one line holding the entries marked dirty since the last write,
with one `os.write`, and re-encodes nothing else. Once the journal outgrows
max(`COMPACT_FLOOR_BYTES`, the snapshot) the next write is a new snapshot under a new
epoch instead (made from the entries' cached encodings), so the bytes written stay
linear in the bytes changed. An epoch rather than a sequence number ties the two
files: a snapshot written by `dump` (at shutdown) or by a new daemon supersedes any
journal without knowing how far it got.

Invariants: the snapshot is replaced atomically (tmp + os.replace) and a journal line
counts only once its newline is on disk, so a reader sees the state before or after a
write, never half of one (a torn last line, from a daemon killed mid-write, is
ignored; a journal of another epoch is stale and ignored); a change is on disk within
`delay_s` (20 ms) unless the disk fails, in which case the write is retried, as a
fresh snapshot since the journal's tail is then unknown. No fsync: the files must
survive the daemon being killed, not the machine losing power, and a power loss ends
every replica anyway. A file that cannot be read is moved aside, not trusted (a
journal line that cannot be read ends the replay: the state is what came before it).
Both files are 0600: the specs carry the replicas' env, values of Secrets included.
Version 1 (the snapshot alone, no epoch, no journal) is still read, so a daemon
upgraded in place adopts its replicas.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from armillary import errors, protocol
from armillary.node.procfs import Identity
from armillary.protocol import AllocationSpec, ReplicaReport

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 1: the snapshot alone, still read
FILE_NAME = "node-state.json"
JOURNAL_SUFFIX = ".journal"  # node-state.journal
RETRY_AFTER_ERROR_S = 1.0
COMPACT_FLOOR_BYTES = 1 << 20  # below this a journal is never worth compacting


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


def journal_path(path: Path) -> Path:
    """The journal continuing the snapshot at `path`."""
    return path.with_suffix(JOURNAL_SUFFIX)


def encode(entry: Entry) -> str:
    """One entry as the JSON text both files hold."""
    return json.dumps(_encode(entry), separators=(",", ":"))


def dump(path: Path, entries: list[Entry]) -> None:
    """Write `entries` as the whole state: a snapshot under a new epoch, so any journal
    left beside it is stale (and removed)."""
    _write_snapshot(path, _new_epoch(), [encode(e) for e in entries])
    journal_path(path).unlink(missing_ok=True)


def load(path: Path) -> list[Entry]:
    """The entries on disk; [] without a snapshot. Unreadable entries are logged and
    skipped; an unreadable file is moved aside."""
    try:
        body = json.loads(path.read_bytes())
        version = body.get("version")
        if version not in (1, FORMAT_VERSION):
            raise ValueError(f"unknown format version {version!r}")
        raws = list(body["allocations"])
        epoch = None if version == 1 else str(body["epoch"])
    except FileNotFoundError:
        return []  # a journal without its snapshot continues nothing we have
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        _move_aside(path, exc)
        return []
    held: dict[str, Any] = {}
    for i, raw in enumerate(raws):
        try:
            held[_id_of(raw)] = raw
        except (KeyError, TypeError) as exc:
            log.error("state file %s: skipping allocations[%d]: %s", path, i, exc)
    if epoch is not None:
        _replay(journal_path(path), epoch, held)
    entries = []
    for allocation_id, raw in held.items():
        try:
            entries.append(_decode(raw))
        except (KeyError, TypeError, ValueError, errors.ProtocolError) as exc:
            log.error("state file %s: skipping %s: %s", path, allocation_id, exc)
    return entries


def _replay(journal: Path, epoch: str, held: dict[str, Any]) -> None:
    """Apply the lines of `journal` to `held` if it continues the snapshot of `epoch`."""
    try:
        data = journal.read_bytes()
    except FileNotFoundError:
        return
    lines = data.split(b"\n")
    if lines.pop():  # what follows the last newline: a write the daemon did not finish
        log.warning("state journal %s: ignoring a torn last line", journal)
    if not lines:
        return  # no header yet: a journal being started
    seq = 0
    try:
        header = json.loads(lines[0])
        if header.get("epoch") != epoch:
            log.info("state journal %s is older than its snapshot; ignored", journal)
            return
        for line in lines[1:]:
            record = json.loads(line)
            if record["seq"] != seq + 1:
                raise ValueError(f"line {record['seq']!r} follows line {seq}")
            puts = {_id_of(raw): raw for raw in record.get("put", [])}
            drops = [str(allocation_id) for allocation_id in record.get("drop", [])]
            for allocation_id in drops:
                held.pop(allocation_id, None)
            held.update(puts)
            seq += 1
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        _move_aside(journal, f"after line {seq}: {exc}")


def _id_of(raw: Any) -> str:
    allocation_id = raw["spec"]["id"]
    if not isinstance(allocation_id, str):
        raise TypeError(f"allocation id {allocation_id!r} is not a string")
    return allocation_id


def _move_aside(path: Path, why: object) -> None:
    aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
    log.error("state file %s is unreadable (%s); moved to %s", path, why, aside)
    os.replace(path, aside)


def _new_epoch() -> str:
    return secrets.token_hex(8)


def _write_snapshot(path: Path, epoch: str, encoded: Iterable[str]) -> int:
    """Replace the snapshot atomically, readable by the daemon's user only; its size."""
    allocations = ",".join(encoded)
    text = f'{{"version":{FORMAT_VERSION},"epoch":"{epoch}","allocations":[{allocations}]}}'
    data = text.encode()
    tmp = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "wb") as sink:
        os.fchmod(descriptor, 0o600)  # a file left by an older daemon keeps its mode
        sink.write(data)
    os.replace(tmp, path)
    return len(data)


class Writer:
    """Debounced writes of the entries marked dirty to `path` and its journal: at most
    one per `delay_s`, of the entries `collect(id)` returns (None: no longer held).

    The writer owns the files: its first write (and the first after an error) is a
    snapshot of what it has been told, so `rewrite` every held id after `load`.
    """

    def __init__(
        self,
        path: Path,
        collect: Callable[[str], Entry | None],
        *,
        delay_s: float = 0.02,
        compact_floor_bytes: int = COMPACT_FLOOR_BYTES,
    ) -> None:
        self.path = path
        self.journal = journal_path(path)
        self.bytes_written = 0  # both files, since creation: what a change costs, measured
        self._collect = collect
        self._delay_s = delay_s
        self._compact_floor_bytes = compact_floor_bytes
        self._pending: asyncio.TimerHandle | None = None
        self._dirty: dict[str, None] = {}  # an ordered set
        self._encoded: dict[str, str] = {}  # every entry, encoded: the next snapshot's parts
        self._fd: int | None = None  # the journal; None: the files may not match, snapshot
        self._seq = 0
        self._snapshot_bytes = 0
        self._journal_bytes = 0

    def mark_dirty(self, allocation_id: str) -> None:
        """This allocation changed, or is no longer held: write it within `delay_s`
        (changes meanwhile share the write)."""
        self._dirty[allocation_id] = None
        self._schedule()

    def rewrite(self, allocation_ids: Iterable[str]) -> None:
        """Replace whatever is on disk with these allocations at the next write."""
        self._close_journal()
        self._encoded.clear()
        self._dirty.update(dict.fromkeys(allocation_ids))
        self._schedule()

    def flush(self) -> None:
        """Write now if anything changed since the last write."""
        if self._pending is not None:
            self._pending.cancel()
            self._write()

    def cancel(self) -> None:
        """Forget a pending write and close the journal (the caller writes the final
        state itself, with `dump`)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._dirty.clear()
        self._close_journal()

    def _schedule(self) -> None:
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self._delay_s, self._write)

    def _write(self) -> None:
        self._pending = None
        puts, drops = self._take_changes()
        try:
            self._append(puts, drops)
        except OSError:  # a full or failing disk: keep serving, retry with a snapshot
            log.exception("writing the state file %s failed; retrying", self.path)
            self._close_journal()
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(RETRY_AFTER_ERROR_S, self._write)

    def _take_changes(self) -> tuple[list[str], list[str]]:
        """Collect and encode the dirty entries into `_encoded`: the encoded puts and the
        dropped ids that differ from what was there."""
        puts: list[str] = []
        drops: list[str] = []
        for allocation_id in self._dirty:
            entry = self._collect(allocation_id)
            if entry is None:
                if self._encoded.pop(allocation_id, None) is not None:
                    drops.append(allocation_id)
                continue
            text = encode(entry)
            if self._encoded.get(allocation_id) != text:
                self._encoded[allocation_id] = text
                puts.append(text)
        self._dirty.clear()
        return puts, drops

    def _append(self, puts: list[str], drops: list[str]) -> None:
        """One journal line for the changes, or a new snapshot holding them when the
        files are not known to match or the journal has outgrown the snapshot."""
        if not puts and not drops and self._fd is not None:
            return
        line = b""
        if self._fd is not None:
            put, drop = ",".join(puts), json.dumps(drops)
            line = f'{{"seq":{self._seq + 1},"put":[{put}],"drop":{drop}}}\n'.encode()
        limit = max(self._compact_floor_bytes, self._snapshot_bytes)
        if self._fd is None or self._journal_bytes + len(line) > limit:
            self._compact()
            return
        written = os.write(self._fd, line)
        self.bytes_written += written
        self._journal_bytes += written
        if written != len(line):
            raise OSError(f"wrote {written} of {len(line)} bytes to {self.journal}")
        self._seq += 1

    def _compact(self) -> None:
        """A snapshot of every entry under a new epoch, then an empty journal for it."""
        self._close_journal()
        epoch = _new_epoch()
        self._snapshot_bytes = _write_snapshot(self.path, epoch, self._encoded.values())
        self.bytes_written += self._snapshot_bytes
        header = json.dumps({"epoch": epoch}).encode() + b"\n"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        descriptor = os.open(self.journal, flags, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            written = os.write(descriptor, header)
        except OSError:
            os.close(descriptor)
            raise
        self.bytes_written += written
        if written != len(header):
            os.close(descriptor)
            raise OSError(f"wrote {written} of {len(header)} bytes to {self.journal}")
        self._fd, self._seq, self._journal_bytes = descriptor, 0, written

    def _close_journal(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
