"""What every Armillary process a test starts has in common: a log file, kill -9, stop."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path


class Child:
    """Mixin for test fixtures wrapping one `python -m armillary …` process."""

    process: subprocess.Popen[bytes] | None
    stop_timeout_s: float = 10.0

    def log_path(self) -> Path:
        raise NotImplementedError

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no flushing."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then kill -9 if it does not exit in time."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        path = self.log_path()
        return path.read_text(errors="replace") if path.exists() else ""
