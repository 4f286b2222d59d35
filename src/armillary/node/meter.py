"""CPU and memory of each replica's process, measured at every heartbeat.

Called by the daemon's heartbeat task with the pids its replicas run as; the answer
rides in the heartbeat it was sending anyway, so measuring costs no message and no
store write of its own. Only the replica's own process (the pid `ps` shows) is
measured, not processes it started: one psutil object per replica, kept between
beats because CPU percent is a difference between two readings. A replica's first
beat after it (re)starts only primes that reading and reports nothing.
"""

from __future__ import annotations

import psutil

from armillary import protocol

MIB = 1024 * 1024


class Meter:
    """Per allocation, the process last measured (so its CPU counter carries on)."""

    def __init__(self) -> None:
        self._watched: dict[str, psutil.Process] = {}

    def measure(self, pids: dict[str, int]) -> dict[str, protocol.ReplicaUsage]:
        """The usage of each allocation's process in `pids` (allocation id → pid),
        for those watched since the previous call; the others start being watched."""
        found: dict[str, protocol.ReplicaUsage] = {}
        for allocation, pid in pids.items():
            process = self._watched.get(allocation)
            try:
                if process is None or process.pid != pid:
                    process = self._watched[allocation] = psutil.Process(pid)
                    process.cpu_percent(interval=None)  # the first reading only primes
                    continue
                with process.oneshot():
                    cpu = process.cpu_percent(interval=None)
                    rss = process.memory_info().rss
            except psutil.Error:  # it exited (or the pid is another's now): next time
                self._watched.pop(allocation, None)
                continue
            found[allocation] = protocol.ReplicaUsage(
                cpu_percent=round(cpu, 1), memory_mb=round(rss / MIB, 1)
            )
        for gone in set(self._watched) - set(pids):
            del self._watched[gone]
        return found
