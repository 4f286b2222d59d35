"""What one change costs the node's state file, with N replicas held.

Each flush follows a change of one entry among N (its report moves, as a restart or a
health change would). Two writers, in the same run:

- full rewrite (format 1): what `statefile.Writer` did before the journal: every entry
  re-encoded (`_encode`, whose `protocol.encode` is `dataclasses.asdict`) and the
  whole file replaced (tmp + os.replace), as the old `dump` did;
- journal (format 2): `statefile.Writer` as it is: one journal line per flush, and a
  new snapshot whenever the journal outgrows it (at least 3 N flushes are run, so
  several snapshots are counted in, amortised).

    .venv/bin/python bench/statefile_bench.py [--n 300 3000] [--seconds 3] [--json FILE]

Figures are flushes per second of one core (the loop does nothing else) and the bytes
written per flush; no fsync, as in the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from armillary import protocol
from armillary.node import statefile
from armillary.node.procfs import Identity


def entry(i: int, *, restarts: int = 0) -> statefile.Entry:
    allocation_id = f"bench-{i:05d}-x7k2p9"
    spec = protocol.AllocationSpec(
        id=allocation_id,
        tenant=f"tenant-{i:05d}",
        component="agent",
        name=f"agent-{i}",
        index=0,
        type="service",
        spec_hash="3f9a0c6e1b2d",
        command=["python", "-m", "agent", "--port", "${PORT_HTTP}"],
        env={"LOG_LEVEL": "info", "DB_URL": "postgresql://db/app", "DB_PASSWORD": "x" * 24},
    )
    return statefile.Entry(
        spec=spec,
        report=protocol.ReplicaReport(
            id=allocation_id,
            state="running",
            pid=10_000 + i,
            restarts=restarts,
            healthy=True,
            started_at=1_765_000_000.5,
            ports={"http": 20_000 + i},
        ),
        process=Identity(
            pid=10_000 + i, pgid=10_000 + i, start_ticks=4_000_000 + i, create_time=1.5, boot_id="b"
        ),
        consecutive=0,
        restart_pending=False,
        spawned=True,
    )


def dump_format_1(path: Path, entries: list[statefile.Entry]) -> int:
    """The write before the journal, as it was (statefile.dump of format 1)."""
    body = {"version": 1, "allocations": [statefile._encode(e) for e in entries]}
    data = json.dumps(body, separators=(",", ":")).encode()
    tmp = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "wb") as sink:
        sink.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return len(data)


def measure(flush: Callable[[int], int], seconds: float, *, at_least: int) -> dict[str, float]:
    """Flush after a change, for `seconds` and `at_least` flushes: flushes/s, bytes each."""
    count = written = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or count < at_least:
        written += flush(count)
        count += 1
    return {"flushes_per_s": count / elapsed, "bytes_per_flush": written / count}


async def run(n: int, seconds: float, directory: Path) -> list[dict[str, Any]]:
    entries = {f"bench-{i:05d}-x7k2p9": entry(i) for i in range(n)}
    changed = entry(n // 2)
    allocation_id = changed.spec.id

    old_path = directory / f"old-{n}.json"

    def flush_old(count: int) -> int:
        entries[allocation_id] = entry(n // 2, restarts=count + 1)
        return dump_format_1(old_path, list(entries.values()))

    writer = statefile.Writer(directory / f"new-{n}.json", entries.get, delay_s=60)
    writer.rewrite(entries)
    writer.flush()

    def flush_new(count: int) -> int:
        before = writer.bytes_written
        entries[allocation_id] = entry(n // 2, restarts=count + 1)
        writer.mark_dirty(allocation_id)
        writer.flush()
        return writer.bytes_written - before

    rows = [
        {"n": n, "writer": "full rewrite (format 1)", **measure(flush_old, seconds, at_least=3)},
        # a line is about an entry and the snapshot N of them: a compaction per ~N flushes,
        # so 3 N flushes count several in
        {"n": n, "writer": "journal (format 2)", **measure(flush_new, seconds, at_least=3 * n)},
    ]
    writer.cancel()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--seconds", type=float, default=3.0, help="per writer and N")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="statefile-bench-") as directory:
        for n in args.n:
            rows += asyncio.run(run(n, args.seconds, Path(directory)))
    print("| N | writer | flushes/s | bytes written per flush |")
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['n']} | {row['writer']} | {row['flushes_per_s']:,.1f} "
            f"| {row['bytes_per_flush']:,.0f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
