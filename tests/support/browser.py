"""Debian's Chromium as the browser tests and the dashboard's benchmark drive it.

Browsers cannot be downloaded on these machines, so Playwright drives the system's
`/usr/bin/chromium` (scripts/ensure-chromium.sh installs it). Headless, without the
sandbox (the tests run as root), and without the background traffic Chromium starts
on its own: this machine's network is closed, and those connections would only be
refused, many at a time. Each launch gets a fresh, temporary user-data directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(driver: Any) -> Any:
    """A headless Chromium from a started `sync_playwright()` driver."""
    return driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
