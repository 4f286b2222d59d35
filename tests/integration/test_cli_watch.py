"""`-w` on every list, through the server's WebSocket: the real CLI as a subprocess
(stdout a pipe, so the lines of docs/cli.md "Watching") against a real server and
node daemon. Each test starts a watch, makes a change through the API, waits (with
a deadline) for the watch to print it, then stops it with Ctrl-C (SIGINT): exit 0,
no traceback. Refused watches exit with their class's code and say why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import httpx
import pytest

from armillary.cli.console import EXIT_DENIED, EXIT_INVALID
from tests.support import documents, tls
from tests.support.api import apply, delete, replicas
from tests.support.cli import invoke
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

SIGNING = "a signing secret of the watch tests"
SLEEPER = {"name": "agent", "command": ["sleep", "100000"]}


class Watch:
    """`armillary ARGS` running in a subprocess, its output collected as it comes."""

    def __init__(self, server: ServerProcess, *args: str, token: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
        env |= {"ARMILLARY_URL": server.url, "ARMILLARY_TOKEN": token or server.token}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "armillary", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self.readers = [
            threading.Thread(target=_collect, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=_collect, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    def shows(self, predicate: Callable[[str], bool], what: str, timeout_s: float = 60) -> None:
        """Wait until the output so far satisfies `predicate` (or the watch ended)."""

        def seen() -> bool:
            assert self.process.poll() is None, (self.stdout, "".join(self.err))
            return predicate(self.stdout)

        wait_for(seen, timeout_s=timeout_s, what=lambda: f"{what}; out: {self.stdout!r}")

    def interrupt(self) -> tuple[int, str, str]:
        """Ctrl-C: its exit code and everything it printed."""
        self.process.send_signal(signal.SIGINT)
        return self.finished(timeout_s=30)

    def finished(self, timeout_s: float = 60) -> tuple[int, str, str]:
        """Its exit code and everything it printed, once it has ended by itself."""
        code = self.process.wait(timeout=timeout_s)
        self._close()
        return code, self.stdout, "".join(self.err)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        for reader in self.readers:
            reader.join(timeout=30)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _collect(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line)


@pytest.fixture
def watches() -> Iterator[Callable[..., Watch]]:
    """Start watches; whatever a failed test left running is killed."""
    started: list[Watch] = []

    def start(server: ServerProcess, *args: str, token: str | None = None) -> Watch:
        started.append(Watch(server, *args, token=token))
        return started[-1]

    yield start
    for watch in started:
        watch.kill()


def stopped(watch: Watch) -> tuple[str, str]:
    """Ctrl-C ends the watch cleanly; its stdout and stderr."""
    code, out, err = watch.interrupt()
    assert code == 0, (out, err)
    assert "Traceback" not in err, err
    return out, err


def lines_with(text: str, *words: str) -> list[str]:
    return [line for line in text.splitlines() if all(w in line for w in words)]


@dataclass(frozen=True)
class World:
    mark: str
    stack: str
    tenant: str  # one running replica of `sleep`
    source: str
    repo: str


@pytest.fixture(scope="module")
def world(server: ServerProcess, node: NodeProcess) -> World:
    mark = uuid.uuid4().hex[:6]
    w = World(
        mark=mark,
        stack=f"s-{mark}",
        tenant=f"w-{mark}",
        source=f"gh-{mark}",
        repo=f"acme/w-{mark}",
    )
    apply(
        server,
        documents.secret(f"sig-{mark}", {"signing": SIGNING}),
        documents.stack(w.stack, SLEEPER),
        documents.tenant(w.tenant, w.stack, mark, routing={"github": [w.repo]}),
        documents.webhook_source(w.source, f"sig-{mark}"),
    )
    wait_for(
        lambda: any(
            (r["report"] or {}).get("state") == "running" for r in replicas(server, w.tenant)
        ),
        timeout_s=60,
        what="the world's replica running",
    )
    return w


def labelled(name: str, w: World, **labels: str) -> dict[str, Any]:
    doc = documents.tenant(name, w.stack, w.mark)
    doc["metadata"]["labels"] = {"watch": w.mark, **labels}
    return doc


def test_get_w_prints_the_list_then_a_line_per_change(
    server: ServerProcess, world: World, watches: Callable[..., Watch]
) -> None:
    first, second = f"a-{world.mark}", f"b-{world.mark}"
    apply(server, labelled(first, world, tier="gold"))
    watch = watches(
        server,
        "get",
        "tenants",
        "-w",
        "-l",
        f"watch={world.mark}",
        "-o",
        "wide",
        "--output-watch-events",
    )
    watch.shows(lambda out: bool(lines_with(out, "ADDED", first)), "the list")
    assert watch.stdout.splitlines()[0].split()[:2] == ["EVENT", "NAME"]

    apply(server, labelled(second, world))
    watch.shows(lambda out: bool(lines_with(out, "ADDED", second)), "the new tenant")
    apply(server, labelled(first, world, tier="silver"))  # still matches: MODIFIED
    watch.shows(lambda out: bool(lines_with(out, "MODIFIED", first, "tier=silver")), "the change")
    delete(server, "tenants", second)
    watch.shows(lambda out: bool(lines_with(out, "DELETED", second)), "the deletion")
    out, _ = stopped(watch)
    assert len(lines_with(out, second)) >= 2 and len(lines_with(out, "EVENT")) == 1
    delete(server, "tenants", first)


def test_get_w_json_prints_one_document_per_change(
    server: ServerProcess, world: World, watches: Callable[..., Watch]
) -> None:
    name = f"j-{world.mark}"
    apply(server, labelled(name, world))
    watch = watches(server, "get", "tenant", name, "-w", "-o", "json")
    watch.shows(lambda out: out.rstrip().endswith("}"), "the tenant's document")
    apply(server, labelled(name, world, tier="gold"))

    def documents_in(out: str) -> list[dict[str, Any]]:
        decoder, found, at = json.JSONDecoder(), [], 0
        text = out.strip()
        while at < len(text):
            doc, end = decoder.raw_decode(text, at)
            found.append(doc)
            at = end + (len(text[end:]) - len(text[end:].lstrip()))
        return found

    watch.shows(
        lambda out: any(
            d["metadata"].get("labels", {}).get("tier") == "gold" for d in documents_in(out)
        ),
        "the changed document",
    )
    out, _ = stopped(watch)
    docs = documents_in(out)
    assert [d["metadata"]["name"] for d in docs] == [name] * len(docs) and len(docs) >= 2
    delete(server, "tenants", name)


def test_ps_w_prints_a_line_when_a_replica_is_added(
    server: ServerProcess, world: World, watches: Callable[..., Watch]
) -> None:
    name = f"p-{world.mark}"
    apply(server, documents.tenant(name, world.stack, world.mark))
    watch = watches(server, "ps", name, "-w")
    watch.shows(lambda out: bool(lines_with(out, name, "running")), "the running replica")
    scaled = documents.tenant(name, world.stack, world.mark, overrides={"agent": {"replicas": 2}})
    apply(server, scaled)
    watch.shows(
        lambda out: len({line.split()[2] for line in lines_with(out, name, "running")}) == 2,
        "the second replica running",
    )
    stopped(watch)
    delete(server, "tenants", name)


def test_ps_w_on_a_terminal_redraws_the_table_in_place(server: ServerProcess, world: World) -> None:
    name = f"t-{world.mark}"
    apply(server, documents.tenant(name, world.stack, world.mark))
    wait_for(lambda: any(ready_replica(r) for r in replicas(server, name)), timeout_s=60)
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    env |= {"ARMILLARY_URL": server.url, "ARMILLARY_TOKEN": server.token}
    env |= {"TERM": "xterm", "COLUMNS": "400", "LINES": "50"}
    process = subprocess.Popen(
        [sys.executable, "-m", "armillary", "ps", name, "-w"],
        stdout=secondary,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(secondary)
    screen: list[bytes] = []

    def shown() -> str:
        return b"".join(screen).decode(errors="replace")

    reader = threading.Thread(target=_drain, args=(primary, screen), daemon=True)
    reader.start()
    try:
        wait_for(lambda: name in shown() and "running" in shown(), what="the table", timeout_s=60)
        scaled = documents.tenant(
            name, world.stack, world.mark, overrides={"agent": {"replicas": 2}}
        )
        apply(server, scaled)
        wait_for(
            lambda: re.search(r"agent-\S+-1\s", shown()), what="the second replica", timeout_s=60
        )
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        reader.join(timeout=30)
        assert process.stderr is not None
        err = process.stderr.read().decode()
        process.stderr.close()
    assert "Traceback" not in err, err
    assert "\x1b[" in shown()  # the cursor moved back: redrawn, not appended
    assert shown().count("TENANT") >= 2  # the header redrawn with each change
    delete(server, "tenants", name)


def ready_replica(replica: dict[str, Any]) -> bool:
    return (replica.get("report") or {}).get("state") == "running"


def _drain(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        into.append(chunk)
    os.close(fd)


def test_nodes_w_shows_a_cordon(
    server: ServerProcess, node: NodeProcess, world: World, watches: Callable[..., Watch]
) -> None:
    watch = watches(server, "nodes", "-w")
    watch.shows(lambda out: "NAME" in out and "Ready" in out, "the node")
    name = lines_with(watch.stdout, "Ready")[0].split()[0]
    with server.client() as http:
        assert http.post(f"/api/v1/nodes/{name}/cordon").status_code == 200
    try:
        watch.shows(lambda out: "SchedulingDisabled" in out, "the node cordoned")
    finally:
        with server.client() as http:
            http.post(f"/api/v1/nodes/{name}/uncordon")
    stopped(watch)


def deliver(server: ServerProcess, world: World) -> str:
    """A signed push routed to the world's tenant; the event's id."""
    body = json.dumps({"ref": "refs/heads/main", "repository": {"full_name": world.repo}}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256="
        + hmac.new(SIGNING.encode(), body, hashlib.sha256).hexdigest(),
    }
    with httpx.Client(base_url=server.url, timeout=30, verify=tls.CONTEXT) as http:
        answer = http.post(f"/webhooks/{world.source}", content=body, headers=headers)
    assert answer.status_code < 300, answer.text
    return str(answer.json()["event"])


def test_events_w_and_runs_w_print_what_a_webhook_started(
    server: ServerProcess, world: World, watches: Callable[..., Watch]
) -> None:
    before = deliver(server, world)
    events = watches(server, "events", "-w", "--source", world.source)
    runs = watches(server, "runs", "-w", "--tenant", world.tenant)
    events.shows(lambda out: bool(lines_with(out, before)), "the list")
    runs.shows(lambda out: bool(lines_with(out, f"event {before}")), "the list")

    event = deliver(server, world)
    events.shows(lambda out: bool(lines_with(out, event, world.tenant)), "the new event")
    runs.shows(lambda out: bool(lines_with(out, f"event {event}")), "the run it started")
    stopped(events)
    stopped(runs)


def provisioned(server: ServerProcess, run_id: str) -> bool:
    with server.client() as http:
        return bool(http.get(f"/api/v1/provision/runs/{run_id}").json()["state"] == "succeeded")


def test_provision_runs_w_and_provision_watch_follow_a_run(
    server: ServerProcess, world: World, watches: Callable[..., Watch]
) -> None:
    name = f"v-{world.mark}"
    with server.client() as http:
        body = {"org": "acme", "tenant": name, "stack": world.stack}
        first = str(http.post("/api/v1/provision/tenants", json=body).json()["id"])
    wait_for(lambda: provisioned(server, first), timeout_s=60, what="the tenant provisioned")
    listing = watches(server, "provision", "runs", "-w", "--tenant", name)
    listing.shows(lambda out: bool(lines_with(out, first, "succeeded")), "the list")

    with server.client() as http:
        run_id = str(http.delete(f"/api/v1/provision/tenants/{name}").json()["id"])
    code, out, err = watches(server, "provision", "watch", run_id).finished()
    assert code == 0 and "deprovision" in out and "succeeded" in out.splitlines()[0], (out, err)
    listing.shows(lambda out: bool(lines_with(out, run_id, "succeeded")), "the run succeeded")
    stopped(listing)


def test_rollout_status_w_follows_until_ready(
    server: ServerProcess, world: World, watches: Callable[..., Watch]
) -> None:
    name = f"r-{world.mark}"
    apply(server, documents.tenant(name, world.stack, world.mark))
    code, out, err = watches(server, "rollout", "status", name, "-w").finished()
    assert code == 0 and f"tenant/{name} Ready" in err, (out, err)
    assert "agent" in out  # then the status table
    delete(server, "tenants", name)


def test_bad_watches_are_refused_clearly(server: ServerProcess, world: World) -> None:
    # They end by themselves: run in this process, as the neighbours' CLI tests do.
    code, _, err = invoke(server, "get", "tenantz", "-w")
    assert code == EXIT_INVALID and "did you mean 'tenant'?" in err, err
    code, _, err = invoke(server, "get", "tenants", "-w", "--limit", "3")
    assert code == 2 and "--limit" in err
    with server.client() as http:
        token = http.post(f"/api/v1/tenants/{world.tenant}/tokens", json={}).json()["token"]
    code, _, err = invoke(server, "nodes", "-w", token=token)
    assert code == EXIT_DENIED and "staff only" in err, err
    code, _, err = invoke(server, "get", "tenants", "-w", token="not-a-token")
    assert code == EXIT_DENIED and "refused" in err, err


def test_a_watch_the_server_cannot_keep_resumes_after_a_restart(
    server: ServerProcess, world: World, watches: Callable[..., Watch]
) -> None:
    """Last in the module: it restarts the module's server. The restarted server
    cannot resume from a position of the one before (Expired): the watch lists again
    and prints only what changed."""
    kept, later = f"k-{world.mark}", f"l-{world.mark}"
    apply(server, labelled(kept, world))
    watch = watches(
        server, "get", "tenants", "-w", "-l", f"watch={world.mark}", "--output-watch-events"
    )
    watch.shows(lambda out: bool(lines_with(out, kept)), "the list")
    server.stop()
    server.start()
    apply(server, labelled(later, world))
    watch.shows(lambda out: bool(lines_with(out, later)), "a change made after the restart")
    out, err = stopped(watch)
    assert "reconnecting" in err
    assert len(lines_with(out, "ADDED", kept)) == 1  # listed again, not shown as new
    delete(server, "tenants", kept)
    delete(server, "tenants", later)
