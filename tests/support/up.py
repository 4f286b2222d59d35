"""`armillary up` as tests run it: its environment, the processes it leaves, and the
clean-up that leaves none whatever the test saw."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil

from tests.support.processes import alive


def env(home: Path) -> dict[str, str]:
    """The test's environment without any ARMILLARY_* of its own, state under `home`,
    and the contexts file `up` registers its server in next to it."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    return {
        **kept,
        "ARMILLARY_HOME": str(home),
        "ARMILLARY_CONFIG": str(home.parent / "armillary-config.json"),
    }


def processes_under(home: Path) -> list[psutil.Process]:
    """The replicas whose data directory lies under `home`."""
    found = []
    for process in psutil.process_iter():
        try:
            if str(home) in process.environ().get("ARMILLARY_DATA_DIR", ""):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def clean_up(process: subprocess.Popen[str] | None, home: Path) -> None:
    """Whatever happened, leave nothing of this `up` running: the `up` process itself,
    the server and node it recorded in up.json, and every replica under `home`."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    state_file = home / "up.json"
    if state_file.exists():
        for pid in json.loads(state_file.read_text()).values():
            if isinstance(pid, int) and alive(pid):
                os.kill(pid, signal.SIGKILL)
    for leftover in processes_under(home):
        leftover.kill()


@contextlib.contextmanager
def quickstart(
    workdir: Path, home: Path, env: dict[str, str], port: int
) -> Iterator[subprocess.CompletedProcess[str]]:
    """`armillary up examples/quickstart -d` in `workdir` on `port` (asserted to have
    started), and `armillary down` with every process under `home` cleaned up after."""
    started = subprocess.run(
        [sys.executable, "-m", "armillary", "up", "examples/quickstart", "-d", "--port", str(port)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield started
    finally:
        subprocess.run(
            [sys.executable, "-m", "armillary", "down"],
            cwd=workdir,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        clean_up(None, home)
