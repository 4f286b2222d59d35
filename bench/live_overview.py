"""Benchmark: the dashboard's overview at fleet size — the server's time to first byte
and the time until the page is usable in Chromium.

Run:  .venv/bin/python bench/live_overview.py [--tenants 1000] [--samples 50]
          [--loads 10] [--json FILE]
  or  .venv/bin/python bench/live_bench.py --scenario overview [--json FILE]
(which calls `run(args)`: the defaults here for what its options do not say).

A real `armillary server` (SQLite in a temporary directory, no node) is given an Org,
a Stack whose component runs 0 replicas, and `--tenants` tenants applied through the
API in batches of 100; every 50th asks for a replica no node can take, so the
overview has failing tenants to put first. Once every tenant has a status:

- time to first byte, from the request written to the status line read, over one
  kept-alive connection, `--samples` times each, and the server's CPU time per
  request (from /proc: what a loaded machine's wait for a core does not inflate):
  `GET /healthz` (the floor: the server's HTTP path with nothing behind it), `GET /`
  (the dashboard's page) and
  `GET /api/v1/tenants?limit=1000` with a session cookie (the list the overview draws
  first: every tenant's document);
- interactive in Chromium (Debian's /usr/bin/chromium, headless, driven by
  Playwright): logged in once, the overview loaded `--loads` times; the time from the
  navigation's start (`performance.timeOrigin`) until the page has drawn every
  tenant's count and its failing-first table, read in the page by `performance.now()`
  in the animation frame that saw it. The first load fetches the modules cold; the
  others revalidate them (`Cache-Control: no-cache`, answered 304).

Targets (issue 16): first byte < 100 ms, interactive < 1 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from procs import free_port, machine, ready, server_env, start_server, stop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' browser settings

from tests.support import browser as browsers

FAILING_EVERY = 50
USER, PASSWORD = "bench", "a bench password long enough"

DRAWN = """() => {
  const counts = [...document.querySelectorAll('[data-count]')]
    .reduce((sum, el) => sum + Number(el.textContent), 0);
  const rows = document.querySelectorAll('#overview-tenants tbody tr').length;
  if (counts !== %d || rows === 0) return false;
  const list = performance.getEntriesByType('resource')
    .find((e) => e.name.includes('/api/v1/tenants'));
  return {drawn: performance.now(), listStart: list.startTime, listEnd: list.responseEnd};
}"""


def documents(tenants: int) -> list[list[dict[str, Any]]]:
    """The Org and Stack, then the tenants, in batches of 100."""
    head = [
        {
            "apiVersion": "armillary.dev/v1",
            "kind": "Org",
            "metadata": {"name": "bench"},
            "spec": {},
        },
        {
            "apiVersion": "armillary.dev/v1",
            "kind": "Stack",
            "metadata": {"name": "web"},
            "spec": {"components": [{"name": "web", "command": ["true"], "replicas": 0}]},
        },
    ]
    batches = [head]
    batch: list[dict[str, Any]] = []
    for i in range(tenants):
        spec: dict[str, Any] = {"org": "bench", "stack": "web"}
        if i % FAILING_EVERY == 0:  # a replica no node takes: the tenant is not Ready
            spec["overrides"] = {"web": {"replicas": 1}}
        batch.append(
            {
                "apiVersion": "armillary.dev/v1",
                "kind": "Tenant",
                "metadata": {"name": f"t-{i:05d}", "labels": {"tier": ("gold", "silver")[i % 2]}},
                "spec": spec,
            }
        )
        if len(batch) == 100:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def fill(url: str, token: str, tenants: int) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=auth, timeout=120) as http:
        for batch in documents(tenants):
            http.post("/api/v1/apply", json={"documents": batch}).raise_for_status()
        created = http.post(
            "/api/v1/users", json={"name": USER, "password": PASSWORD, "role": "viewer"}
        )
        created.raise_for_status()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the controller has written every status
            items = http.get("/api/v1/tenants", params={"limit": 10000}).json()["items"]
            if len(items) == tenants and all(i.get("status") for i in items):
                return
            time.sleep(0.5)
        raise SystemExit("the tenants did not all get a status within 300 s")


def cpu_s(pid: int) -> float:
    """The process's user + system CPU seconds so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_bytes(
    port: int, path: str, samples: int, *, pid: int, cookie: str | None = None
) -> dict[str, float]:
    """ms from the request written to the status line read, on one kept-alive
    connection (the body is read and dropped before the next request), and the
    server's CPU ms per request: on a loaded machine the wall times wait for a core,
    the CPU time does not."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Cookie": cookie} if cookie else {}
    times = []
    spent = 0.0
    try:
        for i in range(samples + 1):
            began = time.perf_counter()
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            elapsed = (time.perf_counter() - began) * 1000
            response.read()
            if response.status != 200:
                raise SystemExit(f"GET {path}: {response.status}")
            if not i:  # the first one opens the connection and warms the route
                spent = cpu_s(pid)
            else:
                times.append(elapsed)
        spent = cpu_s(pid) - spent
    finally:
        connection.close()
    return {**summary(times), "server_cpu_ms": round(spent * 1000 / samples, 2)}


def interactive(url: str, tenants: int, loads: int) -> tuple[list[dict[str, float]], str]:
    """Per load, ms from navigation start: the tenant list's request sent and its
    answer read, and the overview drawn; and the session cookie."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = browsers.launch(driver)
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 900})
            page = context.new_page()
            login = page.request.post(
                f"{url}/api/v1/auth/login", data={"name": USER, "password": PASSWORD}
            )
            if not login.ok:
                raise SystemExit(f"login: {login.status} {login.text()}")
            cookie = next(c for c in context.cookies() if c["name"] == "armillary_session")
            times = []
            for _ in range(loads):
                page.goto(f"{url}/#/overview", wait_until="commit")
                drawn = page.wait_for_function(DRAWN % tenants, polling="raf", timeout=60_000)
                times.append({k: float(v) for k, v in drawn.json_value().items()})
                page.goto("about:blank")
        finally:
            browser.close()
    return times, f"armillary_session={cookie['value']}"


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[max(int(len(ordered) * 0.95) - 1, 0)], 2),
        "max_ms": round(ordered[-1], 2),
    }


def run(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """bench/live_bench.py's `--scenario overview`: measure with the options `args`
    has (`tenants`, `samples`, `loads`; the defaults otherwise), print the table,
    and return the result for its `--json`."""
    result = measure(
        tenants=getattr(args, "tenants", 1000),
        samples=getattr(args, "samples", 50),
        loads=getattr(args, "loads", 10),
    )
    print(table(result))
    return result


def measure(*, tenants: int = 1000, samples: int = 50, loads: int = 10) -> dict[str, Any]:
    """Start a server, fill it, measure; the result as `--json` writes it."""
    before = machine()
    with tempfile.TemporaryDirectory(prefix="live-overview-") as tmp:
        home = Path(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(home, port, server_env(home))
        try:
            deadline = time.monotonic() + 60
            while not ready(url):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"the server did not start; see {home / 'server.log'}")
                time.sleep(0.1)
            token = json.loads((home / "context.json").read_text())["token"]
            fill(url, token, tenants)
            loaded, cookie = interactive(url, tenants, loads)
            warm = loaded[1:] or loaded
            result = {
                "tenants": tenants,
                "first_byte": {
                    "healthz (floor)": first_bytes(port, "/healthz", samples, pid=server.pid),
                    "/ (page)": first_bytes(port, "/", samples, pid=server.pid),
                    "tenants list": first_bytes(
                        port, "/api/v1/tenants?limit=1000", samples, pid=server.pid, cookie=cookie
                    ),
                },
                "interactive": {
                    "cold (first load)": round(loaded[0]["drawn"], 1),
                    "warm p50_ms": round(statistics.median(w["drawn"] for w in warm), 1),
                    "warm max_ms": round(max(w["drawn"] for w in warm), 1),
                    # where a warm load's time goes (medians): until the list is asked
                    # for (modules, whoami), the list's answer, drawing it
                    "warm list_sent_ms": round(statistics.median(w["listStart"] for w in warm), 1),
                    "warm list_ms": round(
                        statistics.median(w["listEnd"] - w["listStart"] for w in warm), 1
                    ),
                    "warm draw_ms": round(
                        statistics.median(w["drawn"] - w["listEnd"] for w in warm), 1
                    ),
                },
                "machine": before,
            }
        finally:
            stop(server)
    return result


def table(result: dict[str, Any]) -> str:
    header = "first byte (ms)   p50     p95     max   server CPU ms/request"
    lines = [f"overview at {result['tenants']} tenants", "", header]
    for name, row in result["first_byte"].items():
        lines.append(
            f"{name:<16} {row['p50_ms']:>6} {row['p95_ms']:>7} {row['max_ms']:>7}"
            f" {row['server_cpu_ms']:>8}"
        )
    shown = result["interactive"]
    lines += [
        "",
        "interactive in Chromium (ms from navigation start to the overview drawn)",
        f"cold {shown['cold (first load)']}   warm p50 {shown['warm p50_ms']}"
        f"   warm max {shown['warm max_ms']}",
        f"a warm load (p50): list asked at {shown['warm list_sent_ms']}, its answer took "
        f"{shown['warm list_ms']}, drawing it {shown['warm draw_ms']}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
