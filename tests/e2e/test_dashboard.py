"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against
the real quickstart (`armillary up examples/quickstart -d`: a server, a node daemon
and both tenants' replicas as processes).

One quickstart and one browser for the module. Every wait has a deadline and waits
on what the page shows; none asserts a time (the restart's latency is measured and
recorded beside the screenshots, against a deadline CI load never reaches). Each page's screenshot is saved under
the test's temporary directory, or under ARMILLARY_E2E_SCREENSHOTS when set (how
docs/images/ was made).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.support import browser as browsers
from tests.support import up
from tests.support.ports import free_port
from tests.support.traversal import open_to_tenants
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
MARKUP = "<img src=x onerror=alert(1)>"
LIVE_S = 2.0  # the promise: a change shows on the open page within 2 s
"""Measured and recorded (`restart-latency.txt` beside the screenshots), not asserted:
the test's deadline is `RESTART_WAIT_S`, which two loaded test workers never reach."""
RESTART_WAIT_S = 20.0
WAIT_MS = 30_000
"""A deadline for what the page shows after a process restarts or a node reports."""


@dataclass(frozen=True)
class Quickstart:
    url: str
    token: str
    home: Path

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quickstart]:
    workdir = tmp_path_factory.mktemp("dashboard")
    open_to_tenants(workdir)  # the node's data dir is in it
    shutil.copytree(ROOT / "examples", workdir / "examples")
    home = workdir / ".armillary"
    port = free_port()
    env = up.env(home)
    with up.quickstart(workdir, home, env, port) as started:
        url = f"http://127.0.0.1:{port}"
        assert f"Dashboard: {url}/" in started.stdout
        token = json.loads((home / "context.json").read_text())["token"]
        yield Quickstart(url=url, token=token, home=home)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not browsers.CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("no /usr/bin/chromium: run scripts/ensure-chromium.sh")
        pytest.skip("no /usr/bin/chromium (scripts/ensure-chromium.sh installs it)")
    with sync_playwright() as driver:
        # launch() gives every run a fresh, temporary user-data directory
        launched = browsers.launch(driver)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("ARMILLARY_E2E_SCREENSHOTS")
    where = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def user(quickstart: Quickstart, role: str) -> str:
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    answer = quickstart.api(
        "POST", "/api/v1/users", json={"name": name, "password": PASSWORD, "role": role}
    )
    assert answer.status_code == 201, answer.text
    return name


def logged_in(browser: Any, quickstart: Quickstart, role: str = "admin") -> Any:
    """A fresh browser context (its own cookies), logged in through the login page."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []

    def dialog(opened: Any) -> None:  # recorded: a script that ran would open one
        dialogs.append(opened.message)
        if opened.type == "confirm":  # "Apply these documents?"
            opened.accept()
        else:
            opened.dismiss()

    page.on("dialog", dialog)
    page.dialogs = dialogs
    page.goto(quickstart.url + "/")
    page.wait_for_selector("#login-name")
    page.fill("#login-name", user(quickstart, role))
    page.fill("#login-password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:text('Overview')")
    page.wait_for_selector("#live[data-status='live']", timeout=WAIT_MS)
    return page


def cell(page: Any, replica: str, field: str) -> str:
    text: str = page.inner_text(f"tr[data-replica='{replica}'] td[data-field='{field}']")
    return text.strip()


def test_login_then_the_overview_shows_both_quickstart_tenants_ready(
    browser: Any, quickstart: Quickstart, shots: Path
) -> None:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(quickstart.url + "/")
    page.wait_for_selector("#login-name")
    page.screenshot(path=str(shots / "login.png"))
    assert page.evaluate("document.activeElement.id") == "login-name"  # focus starts there
    page.keyboard.press("Shift+Tab")  # backwards: the theme switch, then the skip link
    assert page.evaluate("document.activeElement.id") == "theme"
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.fill("#login-name", user(quickstart, "admin"))
    page.fill("#login-password", "not the password")
    page.click("button[type=submit]")
    page.wait_for_selector("text=wrong user name or password")
    page.fill("#login-password", PASSWORD)
    page.press("#login-password", "Enter")  # the keyboard is enough
    for tenant in ("acme-sre", "acme-support"):
        row = page.wait_for_selector(f"#overview-tenants tr[data-tenant='{tenant}']")
        assert row is not None and "Ready" in row.inner_text()
    page.wait_for_selector("#live[data-status='live']", timeout=WAIT_MS)
    page.screenshot(path=str(shots / "overview.png"), full_page=True)
    page.click("#logout")
    page.wait_for_selector("#login-name")
    assert page.evaluate("fetch('/api/v1/auth/whoami').then(r => r.status)") == 401
    context.close()


def test_a_killed_replica_restart_count_changes_on_the_open_page(
    browser: Any, quickstart: Quickstart, shots: Path
) -> None:
    page = logged_in(browser, quickstart)
    page.goto(quickstart.url + "/#/tenants/acme-sre")
    page.wait_for_selector("#replicas tr[data-replica]")
    replicas = quickstart.api("GET", "/api/v1/replicas", params={"tenant": "acme-sre"}).json()
    agent = next(r for r in replicas["items"] if r["component"] == "agent")
    page.wait_for_selector(f"tr[data-replica='{agent['id']}'] td[data-field='pid']:not(:text('-'))")
    before = int(cell(page, agent["id"], "restarts"))
    pid = int(cell(page, agent["id"], "pid"))
    page.screenshot(path=str(shots / "tenant.png"), full_page=True)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    page.wait_for_function(
        "([id, before]) => { const td = document.querySelector("
        "`tr[data-replica='${id}'] td[data-field='restarts']`);"
        " return td && Number(td.textContent) > before; }",
        arg=[agent["id"], before],
        timeout=RESTART_WAIT_S * 1000,
    )
    latency = time.monotonic() - killed
    verdict = "within" if latency <= LIVE_S else "BEYOND"
    record = f"restart shown {latency:.2f} s after the kill ({verdict} the {LIVE_S:.0f} s promise)"
    (shots / "restart-latency.txt").write_text(record + "\n")
    print(record)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
    page.context.close()


def test_the_logs_page_shows_a_line_printed_after_it_opened(
    browser: Any, quickstart: Quickstart, shots: Path
) -> None:
    replicas = quickstart.api("GET", "/api/v1/replicas", params={"tenant": "acme-sre"}).json()
    agent = next(
        r
        for r in replicas["items"]
        if r["component"] == "agent" and (r["report"] or {}).get("state") == "running"
    )
    page = logged_in(browser, quickstart)
    page.goto(f"{quickstart.url}/#/logs?tenant=acme-sre&component=agent&replica={agent['id']}")
    page.wait_for_selector("#log-lines li")  # the tail is there: the page is following
    mark = f"dashboard-e2e-{uuid.uuid4().hex}"
    port = next(iter(agent["ports"].values()))
    httpx.get(f"http://127.0.0.1:{port}/{mark}", timeout=10)  # the agent logs each request
    page.wait_for_selector(f"#log-lines li:has-text('{mark}')", timeout=WAIT_MS)
    page.screenshot(path=str(shots / "logs.png"), full_page=True)
    page.context.close()


def test_a_signed_webhook_shows_its_event_and_run_live(
    browser: Any, quickstart: Quickstart, shots: Path
) -> None:
    page = logged_in(browser, quickstart)
    page.wait_for_selector("#recent-events")
    body = json.dumps({"action": "opened", "repository": {"full_name": "acme/support-bot"}})
    signature = hmac.new(b"quickstart-webhook-secret", body.encode(), hashlib.sha256)
    answer = httpx.post(
        f"{quickstart.url}/webhooks/github",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={signature.hexdigest()}",
        },
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    event, run = answer.json()["event"], answer.json()["run"]
    page.wait_for_selector(f"#recent-events tr[data-event='{event}']", timeout=WAIT_MS)
    page.wait_for_selector(f"#recent-runs tr[data-run='{run}']", timeout=WAIT_MS)
    page.screenshot(path=str(shots / "overview-live.png"), full_page=True)
    page.goto(f"{quickstart.url}/#/events?id={event}")
    page.wait_for_selector(".inspector h2")
    page.screenshot(path=str(shots / "events.png"), full_page=True)
    page.goto(f"{quickstart.url}/#/runs?id={run}")
    page.wait_for_selector(".inspector h2")
    page.screenshot(path=str(shots / "runs.png"), full_page=True)
    page.context.close()


PAGES = {
    "overview": "#overview-tenants tr[data-tenant]",
    "tenants": "#tenants tbody tr",
    "tenants/acme-sre": "#replicas tr[data-replica]",
    "nodes": "article[data-node]",
    "runs": "table#runs",
    "plan": "main h1",
    "logs": "#logs-tenant option",
}
"""Each page, and what shows that its data (fetched, or from the live socket) is drawn."""


def test_a_viewer_sees_no_mutating_control_and_a_post_without_csrf_fails(
    browser: Any, quickstart: Quickstart
) -> None:
    viewer = logged_in(browser, quickstart, role="viewer")
    for name, drawn in PAGES.items():
        viewer.goto(f"{quickstart.url}/#/{name}")
        viewer.wait_for_selector("main h1")
        viewer.wait_for_selector(drawn, state="attached", timeout=WAIT_MS)  # the data is drawn
        viewer.wait_for_selector("#live[data-status='live']", timeout=WAIT_MS)
        viewer.wait_for_load_state("networkidle")
        assert viewer.locator("button.mutating").count() == 0, name
    viewer.context.close()
    admin = logged_in(browser, quickstart)
    admin.goto(f"{quickstart.url}/#/nodes")
    admin.wait_for_selector("button.mutating")  # an admin is shown cordon
    forged = admin.evaluate(
        "fetch('/api/v1/nodes/local/cordon', {method: 'POST', credentials: 'same-origin'})"
        ".then(r => r.status)"
    )
    assert forged == 403
    node = quickstart.api("GET", "/api/v1/nodes").json()["items"][0]
    assert node["schedulable"] is True
    admin.context.close()


def test_markup_a_tenant_carries_is_shown_as_text(
    browser: Any, quickstart: Quickstart, shots: Path
) -> None:
    tenant = quickstart.api("GET", "/api/v1/tenants/acme-support").json()
    as_label = {**tenant, "metadata": {**tenant["metadata"], "labels": {"note": MARKUP}}}
    refused = quickstart.api("PUT", "/api/v1/tenants/acme-support", json=as_label)
    assert refused.status_code == 422  # a label value cannot hold it at all
    annotated = {**tenant, "metadata": {**tenant["metadata"], "annotations": {"note": MARKUP}}}
    assert quickstart.api("PUT", "/api/v1/tenants/acme-support", json=annotated).is_success
    page = logged_in(browser, quickstart)
    page.goto(f"{quickstart.url}/#/tenants/acme-support")
    shown = page.wait_for_selector(f"dl.annotations dd:text-is('{MARKUP}')")
    assert shown is not None
    assert page.locator("main img").count() == 0
    assert page.dialogs == []
    csp = httpx.get(quickstart.url + "/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    page.context.close()


def test_the_plan_page_shows_the_diff_of_pasted_yaml_and_applies_it(
    browser: Any, quickstart: Quickstart, shots: Path
) -> None:
    org = f"org-{uuid.uuid4().hex[:6]}"
    text = f"apiVersion: armillary.dev/v1\nkind: Org\nmetadata:\n  name: {org}\nspec: {{}}\n"
    page = logged_in(browser, quickstart, role="developer")
    page.goto(f"{quickstart.url}/#/plan")
    page.fill("#plan-text", text.replace("spec: {}", "spec: {display_name: [1]}"))
    page.click("button:text-is('Plan')")
    page.wait_for_selector("ul.issues li:has-text('line 5')")  # the server's words, with the line
    page.fill("#plan-text", text)
    page.click("button:text-is('Plan')")
    page.wait_for_selector(f"td:text-is('{org}')")
    page.screenshot(path=str(shots / "plan-diff.png"), full_page=True)
    assert quickstart.api("GET", f"/api/v1/orgs/{org}").status_code == 404  # a plan writes nothing
    page.click("button.mutating:text('Apply')")
    page.wait_for_selector("td .badge:text('created')")
    assert quickstart.api("GET", f"/api/v1/orgs/{org}").status_code == 200
    page.screenshot(path=str(shots / "plan-applied.png"), full_page=True)
    page.context.close()


OTHER_PAGES = ("tenants", "nodes", "provisioning", "releases", "audit", "plan")


def test_every_page_renders_and_is_saved_as_a_screenshot(
    browser: Any, quickstart: Quickstart, shots: Path
) -> None:
    page = logged_in(browser, quickstart)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    for name in OTHER_PAGES:
        page.goto(f"{quickstart.url}/#/{name}")
        page.wait_for_selector("main h1")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.click("#theme")  # the other theme than the system's
    page.goto(f"{quickstart.url}/#/overview")
    page.wait_for_selector("#overview-tenants")
    page.screenshot(path=str(shots / "overview-other-theme.png"), full_page=True)
    assert errors == []
    saved = {p.name for p in shots.iterdir()}
    assert {f"{name}.png" for name in OTHER_PAGES} <= saved
    wait_for(lambda: page.locator("main .notice.bad").count() == 0, timeout_s=30, what="no error")
    page.context.close()
