"""The node state file: a snapshot plus a journal, each change costing what changed.

The files are read back with `statefile.load` at every point a kill -9 could leave
them in (after each write, and with the journal cut at every byte of its last line).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from armillary import protocol
from armillary.node import statefile
from armillary.node.procfs import Identity


def entry(
    i: int, *, restarts: int = 0, state: protocol.ReplicaState = "running"
) -> statefile.Entry:
    allocation_id = f"a-{i}"
    spec = protocol.AllocationSpec(
        id=allocation_id,
        tenant="acme",
        component="agent",
        name=f"agent-{i}",
        index=i,
        type="service",
        spec_hash="h",
        command=["sleep", "1000"],
        env={"DB_PASSWORD": "s3cret", "INDEX": str(i)},
    )
    return statefile.Entry(
        spec=spec,
        report=protocol.ReplicaReport(
            id=allocation_id, state=state, pid=1000 + i, restarts=restarts, started_at=1.5
        ),
        process=Identity(
            pid=1000 + i, pgid=1000 + i, start_ticks=7 + i, create_time=1.5, boot_id="b"
        ),
        consecutive=restarts,
        restart_pending=False,
        spawned=True,
    )


class Held:
    """What a supervisor holds, and the writer it marks."""

    def __init__(self, path: Path, *, compact_floor_bytes: int = statefile.COMPACT_FLOOR_BYTES):
        self.entries: dict[str, statefile.Entry] = {}
        self.writer = statefile.Writer(
            path, self.entries.get, delay_s=60, compact_floor_bytes=compact_floor_bytes
        )

    def put(self, e: statefile.Entry) -> None:
        self.entries[e.spec.id] = e
        self.writer.mark_dirty(e.spec.id)

    def drop(self, allocation_id: str) -> None:
        del self.entries[allocation_id]
        self.writer.mark_dirty(allocation_id)

    def on_disk(self) -> dict[str, statefile.Entry]:
        return {e.spec.id: e for e in statefile.load(self.writer.path)}


def lines_of(journal: Path) -> list[bytes]:
    return journal.read_bytes().splitlines(keepends=True)


async def test_puts_and_drops_round_trip_through_the_journal(tmp_path: Path) -> None:
    held = Held(tmp_path / statefile.FILE_NAME)
    for i in range(3):
        held.entries[f"a-{i}"] = entry(i)
    held.writer.rewrite(held.entries)
    held.writer.flush()
    snapshot = (tmp_path / statefile.FILE_NAME).read_bytes()
    assert held.on_disk() == held.entries

    held.put(entry(1, restarts=1))
    held.drop("a-0")
    held.writer.flush()
    held.put(entry(3))
    held.writer.flush()

    assert (tmp_path / statefile.FILE_NAME).read_bytes() == snapshot  # only appended to
    journal = lines_of(tmp_path / "node-state.journal")
    assert [json.loads(line)["seq"] for line in journal[1:]] == [1, 2]
    assert json.loads(journal[1])["drop"] == ["a-0"]
    assert (
        held.on_disk()
        == held.entries
        == {
            "a-1": entry(1, restarts=1),
            "a-2": entry(2),
            "a-3": entry(3),
        }
    )


async def test_an_unchanged_entry_writes_nothing(tmp_path: Path) -> None:
    held = Held(tmp_path / statefile.FILE_NAME)
    held.put(entry(0))
    held.writer.flush()
    written = held.writer.bytes_written
    held.put(entry(0))  # marked, but equal to what is on disk
    held.writer.flush()
    assert held.writer.bytes_written == written


async def test_one_change_among_3000_writes_one_entry(tmp_path: Path) -> None:
    path = tmp_path / statefile.FILE_NAME
    held = Held(path)
    for i in range(3000):
        held.entries[f"a-{i}"] = entry(i)
    held.writer.rewrite(held.entries)
    held.writer.flush()
    snapshot = path.stat()
    assert snapshot.st_size > 3000 * len(statefile.encode(entry(0)))

    for restarts in range(1, 11):
        before = held.writer.bytes_written, (tmp_path / "node-state.journal").stat().st_size
        held.put(entry(1234, restarts=restarts))
        held.writer.flush()
        line = len(statefile.encode(entry(1234, restarts=restarts)))
        journal = (tmp_path / "node-state.journal").stat().st_size
        assert line < held.writer.bytes_written - before[0] == journal - before[1] < line + 64

    after = path.stat()  # the snapshot was not touched
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        snapshot.st_ino,
        snapshot.st_size,
        snapshot.st_mtime_ns,
    )
    assert held.on_disk() == held.entries


async def test_compaction_keeps_the_content_and_bounds_the_files(tmp_path: Path) -> None:
    path = tmp_path / statefile.FILE_NAME
    floor = 8192
    held = Held(path, compact_floor_bytes=floor)
    for i in range(10):
        held.entries[f"a-{i}"] = entry(i)
    held.writer.rewrite(held.entries)
    held.writer.flush()
    changed = 0
    epochs = set()
    for step in range(400):
        held.put(entry(step % 10, restarts=step))
        if step % 7 == 0:
            held.drop(f"a-{step % 10}")
        held.writer.flush()
        changed += len(lines_of(tmp_path / "node-state.journal")[-1])
        epochs.add(json.loads(path.read_bytes())["epoch"])
        limit = max(floor, path.stat().st_size)
        assert (tmp_path / "node-state.journal").stat().st_size <= limit
        assert held.on_disk() == held.entries
    assert len(epochs) > 3  # it did compact, several times
    assert held.writer.bytes_written < 4 * changed  # linear in the changes, not N per change


async def test_every_point_a_kill_could_leave_reads_as_a_whole_state(tmp_path: Path) -> None:
    path = tmp_path / "live" / statefile.FILE_NAME
    path.parent.mkdir()
    held = Held(path, compact_floor_bytes=4096)
    held.writer.rewrite([])
    held.writer.flush()
    states: list[dict[str, statefile.Entry]] = [{}]
    exhaustive = False
    for step in range(24):
        held.put(entry(step % 6, restarts=step))
        held.put(entry(step % 6 + 1, restarts=step))
        if step % 5 == 4:
            held.drop(f"a-{step % 6}")
        held.writer.flush()
        states.append(dict(held.entries))

        copy = tmp_path / f"copy-{step}"
        shutil.copytree(path.parent, copy)  # as a kill -9 right after this write leaves it
        assert {e.spec.id: e for e in statefile.load(copy / statefile.FILE_NAME)} == states[-1]

        journal = copy / "node-state.journal"
        whole = journal.read_bytes()
        last = lines_of(journal)[-1]
        if last.startswith(b'{"epoch"'):
            continue  # this write was a compaction: the snapshot was replaced atomically
        start = len(whole) - len(last)
        cuts = range(start, len(whole), len(last) // 5)  # killed inside the last write
        if not exhaustive and b'"drop":["' in last:  # at every byte, once: loads are slow
            cuts, exhaustive = range(start, len(whole)), True
        for cut in cuts:
            journal.write_bytes(whole[:cut])
            got = {e.spec.id: e for e in statefile.load(copy / statefile.FILE_NAME)}
            assert got == states[-2], cut
        assert sorted(p.name for p in copy.iterdir()) == [
            "node-state.journal",
            "node-state.json",
        ]  # nothing was moved aside
    assert exhaustive


async def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / statefile.FILE_NAME
    held = Held(path)
    held.put(entry(0))
    held.writer.flush()
    with (tmp_path / "node-state.journal").open("ab") as journal:
        journal.write(b'{"seq":1,"put":[{"spec":')
    assert statefile.load(path) == [entry(0)]
    assert (tmp_path / "node-state.journal").exists()


async def test_a_corrupt_journal_line_moves_the_journal_aside(tmp_path: Path) -> None:
    path = tmp_path / statefile.FILE_NAME
    held = Held(path)
    held.put(entry(0))
    held.writer.flush()
    held.put(entry(1))
    held.writer.flush()
    journal = tmp_path / "node-state.journal"
    good = journal.read_bytes()
    journal.write_bytes(good + b"not json\n" + good.splitlines(keepends=True)[-1])
    assert statefile.load(path) == [entry(0), entry(1)]  # what came before the bad line
    assert not journal.exists()
    assert len(list(tmp_path.glob("node-state.journal.unreadable-*"))) == 1


async def test_a_journal_line_out_of_sequence_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / statefile.FILE_NAME
    held = Held(path)
    held.put(entry(0))
    held.writer.flush()
    held.put(entry(1))
    held.writer.flush()
    journal = tmp_path / "node-state.journal"
    journal.write_bytes(journal.read_bytes() + lines_of(journal)[-1])  # line 1 twice
    assert statefile.load(path) == [entry(0), entry(1)]
    assert not journal.exists()


def test_an_unreadable_snapshot_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / statefile.FILE_NAME
    path.write_text('{"version": 2, "allocations": [')
    assert statefile.load(path) == []
    assert not path.exists()
    assert len(list(tmp_path.glob("node-state.json.unreadable-*"))) == 1


async def test_a_snapshot_written_by_dump_makes_any_journal_stale(tmp_path: Path) -> None:
    path = tmp_path / statefile.FILE_NAME
    held = Held(path)
    held.put(entry(0))
    held.writer.flush()
    held.put(entry(1))
    held.writer.flush()
    journal = (tmp_path / "node-state.journal").read_bytes()
    held.writer.cancel()
    statefile.dump(path, [entry(2)])
    assert not (tmp_path / "node-state.journal").exists()
    assert statefile.load(path) == [entry(2)]
    (tmp_path / "node-state.journal").write_bytes(journal)  # killed before its unlink
    assert statefile.load(path) == [entry(2)]


async def test_a_version_1_file_still_loads_and_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / statefile.FILE_NAME
    allocations = [json.loads(statefile.encode(entry(i))) for i in range(2)]
    path.write_text(json.dumps({"version": 1, "allocations": allocations}))
    (tmp_path / "node-state.journal").write_text('{"epoch":"x"}\n')  # not of a version 1
    assert statefile.load(path) == [entry(0), entry(1)]

    held = Held(path)
    held.entries.update({e.spec.id: e for e in statefile.load(path)})
    held.writer.rewrite(held.entries)  # what Supervisor.start() does after load
    held.writer.flush()
    assert json.loads(path.read_bytes())["version"] == statefile.FORMAT_VERSION == 2
    assert statefile.load(path) == [entry(0), entry(1)]


async def test_both_files_are_the_daemons_alone(tmp_path: Path) -> None:
    path = tmp_path / statefile.FILE_NAME
    path.write_text("{}")
    (tmp_path / "node-state.journal").write_text("")
    os.chmod(path, 0o644)  # as an older daemon might have left them
    os.chmod(tmp_path / "node-state.journal", 0o644)
    held = Held(path)
    held.put(entry(0))
    held.writer.flush()
    for written in (path, tmp_path / "node-state.journal"):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600


async def test_a_failed_write_is_retried_as_a_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / statefile.FILE_NAME
    held = Held(path)
    held.put(entry(0))
    held.writer.flush()
    monkeypatch.setattr(statefile, "RETRY_AFTER_ERROR_S", 60)
    real_write = os.write

    def half(fd: int, data: bytes) -> int:  # a disk that fills up mid-line
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(os, "write", half)
    held.put(entry(1))
    held.writer.flush()
    monkeypatch.setattr(os, "write", real_write)
    assert statefile.load(path) == [entry(0)]  # the torn line is ignored

    held.writer.flush()  # the retry
    assert statefile.load(path) == [entry(0), entry(1)]
    assert lines_of(tmp_path / "node-state.journal")[-1].startswith(b'{"epoch"')
