"""What the operating system says about the processes a test caused."""

from __future__ import annotations

import httpx
import psutil

from tests.support import tls


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_marked(mark: str) -> list[psutil.Process]:
    """Every live process whose environment carries ARMILLARY_TEST_MARK=mark."""
    return processes_with("ARMILLARY_TEST_MARK", mark)


def processes_with(name: str, value: str) -> list[psutil.Process]:
    """Every live process whose environment has `name` set to `value`."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(name) == value and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def environ_pid(pid: int) -> dict[str, str]:
    return dict(psutil.Process(pid).environ())


def http_ok(port: int, path: str = "/healthz") -> bool:
    """A replica on `port` answers 200 at `path`."""
    try:
        return (
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=0.5, verify=tls.CONTEXT).status_code
            == 200
        )
    except httpx.HTTPError:
        return False


def command_line(pid: int) -> str:
    """The process's argv as `ps` shows it to every user (/proc/<pid>/cmdline)."""
    with open(f"/proc/{pid}/cmdline", "rb") as source:
        return source.read().replace(b"\0", b" ").decode(errors="replace")
