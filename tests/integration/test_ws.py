"""The live channels (`/api/v1/ws`) of a real server with a real node, on both backends,
through the typed client the CLI uses (`armillary.live_client`) and, where a client
must misbehave (never read, never answer a ping), a raw WebSocket.

Each channel lists and follows what changes; a watch resumes from a position, and one
too old (or of another server) is `Expired` and lists again; a caller without a valid
credential, or with a session cookie from another site, is closed 4001; a tenant's
token sees nothing of another tenant on any channel; a client that stops reading is
closed 4008 while a fast one receives every change in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from armillary.live_client import Closed, Frame, Live, LiveError, Subscription, ws_url
from tests.support import documents, postgres
from tests.support.api import apply
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess, start_replicas

SERVER_ENV = {
    "ARMILLARY_WS_QUEUE": "50",
    "ARMILLARY_WS_HISTORY": "100",
    # no ping during a test: a slow client is closed as slow (4008), never for a pong
    # that a loaded machine delayed (pings have their own server: `pinging`)
    "ARMILLARY_WS_PING_S": "3600",
}
SIGNING = "live-channel-signing-key"
TICKER = [
    "python3",
    "-u",
    "-c",
    "import time\nwhile True:\n print('tick', flush=True)\n time.sleep(0.2)",
]
WAIT_S = 60.0


@dataclass
class World:
    mark: str
    stack: str
    source: str
    tenant_a: str
    tenant_b: str
    repo_a: str
    repo_b: str
    token_a: str


def _tenant(name: str, stack: str, repo: str, **labels: str) -> dict[str, Any]:
    doc = documents.tenant(name, stack, routing={"github": [repo]})
    doc["metadata"]["labels"] = labels
    return doc


@pytest.fixture(scope="module")
def world(server: ServerProcess, node: NodeProcess) -> World:
    mark = uuid.uuid4().hex[:6]
    stack, source = f"live-{mark}", f"gh-{mark}"
    w = World(
        mark=mark,
        stack=stack,
        source=source,
        tenant_a=f"a-{mark}",
        tenant_b=f"b-{mark}",
        repo_a=f"acme/a-{mark}",
        repo_b=f"acme/b-{mark}",
        token_a="",
    )
    apply(
        server,
        documents.secret(source, {"signing": SIGNING}),
        documents.webhook_source(source, source),
        documents.stack(
            stack,
            {"name": "agent", "command": TICKER},
            {"name": "job", "type": "job", "command": ["true"]},
        ),
        _tenant(w.tenant_a, stack, w.repo_a, side="a"),
        _tenant(w.tenant_b, stack, w.repo_b, side="b"),
    )
    with server.client() as http:
        w.token_a = http.post(f"/api/v1/tenants/{w.tenant_a}/tokens", json={}).json()["token"]
    return w


@contextlib.asynccontextmanager
async def live(server: ServerProcess, token: str | None = "admin") -> AsyncIterator[Live]:
    async with Live.connect(server.url, token=server.token if token == "admin" else token) as it:
        yield it


async def take(
    sub: Subscription, until: Callable[[Frame], bool], *, timeout_s: float = WAIT_S
) -> list[Frame]:
    """The subscription's frames up to and with the first that `until` accepts."""
    seen: list[Frame] = []

    async def collect() -> None:
        async for frame in sub:
            seen.append(frame)
            if until(frame):
                return
        raise AssertionError(f"the subscription ended; frames: {seen}")

    try:
        await asyncio.wait_for(collect(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"no frame came that was awaited; frames: {seen[-20:]}") from None
    return seen


async def arrived(sub: Subscription) -> list[Frame]:
    """The frames the subscription has received by now, without waiting for more."""
    found: list[Frame] = []
    while True:
        try:
            found.append(await asyncio.wait_for(anext(sub), 0.05))
        except TimeoutError:
            return found


def schedule(name: str, tenant: str, *, cron: str) -> dict[str, Any]:
    return {
        "apiVersion": "armillary.dev/v1",
        "kind": "Schedule",
        "metadata": {"name": name},
        "spec": {"tenant": tenant, "component": "job", "cron": cron},
    }


def synced(frame: Frame) -> bool:
    return frame.type == "SYNCED"


def position(frame: Frame) -> int:
    value = frame.resource_version
    assert value is not None, frame
    return int(value.rpartition(".")[2])


async def put(server: ServerProcess, *docs: dict[str, Any]) -> None:
    """`apply`, in a thread: the test's own clients keep reading meanwhile."""
    await asyncio.to_thread(apply, server, *docs)


def org(name: str, **labels: str) -> dict[str, Any]:
    doc = documents.org(name)
    doc["metadata"]["labels"] = labels
    return doc


def deliver(server: ServerProcess, source: str, repo: str) -> None:
    body = json.dumps(
        {"ref": "refs/heads/main", "after": uuid.uuid4().hex, "repository": {"full_name": repo}}
    ).encode()
    digest = hmac.new(SIGNING.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={digest}",
    }
    with server.client(token=None) as http:
        response = http.post(f"/webhooks/{source}", content=body, headers=headers)
    assert response.status_code in (200, 202), response.text


def start_run(server: ServerProcess, tenant: str) -> str:
    with server.client() as http:
        response = http.post("/api/v1/agents/run", json={"tenant": tenant, "input": {"n": 1}})
    assert response.status_code in (200, 201, 202), response.text
    return str(response.json()["id"])


async def test_resources_list_then_follow_with_a_selector(
    server: ServerProcess, world: World
) -> None:
    team = f"t-{world.mark}"
    await put(server, org(f"x1-{world.mark}", team=team), org(f"x2-{world.mark}", team=team))
    await put(server, org(f"other-{world.mark}", team="other"))
    async with live(server) as client:
        sub = await client.subscribe("resources", kinds=["Org"], selector=f"team={team}")
        listed = await take(sub, synced)
        assert [f.type for f in listed] == ["ADDED", "ADDED", "SYNCED"]
        names = {f.payload["object"]["metadata"]["name"] for f in listed[:2]}
        assert names == {f"x1-{world.mark}", f"x2-{world.mark}"}
        await put(server, org(f"x1-{world.mark}", team=team, more="yes"))
        await put(server, org(f"x2-{world.mark}", team="elsewhere"))  # leaves the selector
        await put(server, org(f"x3-{world.mark}", team=team))
        with server.client() as http:
            assert http.delete(f"/api/v1/orgs/x1-{world.mark}").status_code == 200
        frames = await take(
            sub,
            lambda f: (
                f.type == "DELETED" and f.payload["object"]["metadata"]["name"].startswith("x1")
            ),
        )
    seen = [(f.type, f.payload["object"]["metadata"]["name"][:2]) for f in frames]
    assert seen == [("MODIFIED", "x1"), ("DELETED", "x2"), ("ADDED", "x3"), ("DELETED", "x1")]
    assert frames[0].payload["object"]["metadata"]["labels"]["more"] == "yes"
    versions = [position(f) for f in [*listed[-1:], *frames]]
    assert versions == sorted(set(versions)), "positions rise across objects"


async def test_a_watch_resumes_from_its_position_and_one_too_old_lists_again(
    server: ServerProcess, world: World
) -> None:
    name = f"resume-{world.mark}"
    async with live(server) as client:
        first = await client.subscribe("resources", kinds=["Org"], name=name)
        [mark] = await take(first, synced)
        await put(server, org(name, step="1"))
        await put(server, org(name, step="2"))
        live_frames = await take(
            first, lambda f: f.payload["object"]["metadata"]["labels"]["step"] == "2"
        )
        await first.unsubscribe()
        again = await client.subscribe(
            "resources", kinds=["Org"], name=name, resource_version=mark.resource_version
        )
        frames = await take(again, synced)
        # Exactly what a watcher saw after that position, at the same positions.
        assert [(f.type, f.resource_version) for f in frames[:-1]] == [
            (f.type, f.resource_version) for f in live_frames
        ]
        assert frames[0].type == "ADDED" and position(mark) < position(frames[0])
        # More changes than the server keeps (ARMILLARY_WS_HISTORY=100): too old.
        await put(server, *(org(f"flood-{world.mark}-{i}") for i in range(120)))
        stale = await client.subscribe(
            "resources", kinds=["Org"], name=name, resource_version=mark.resource_version
        )
        with pytest.raises(LiveError) as expired:
            await take(stale, synced)
        assert expired.value.code == "Expired" and expired.value.field == "payload.resourceVersion"
        foreign = await client.subscribe("resources", kinds=["Org"], resource_version="0000.1")
        with pytest.raises(LiveError, match="Expired"):
            await take(foreign, synced)
        relisted = await take(await client.subscribe("resources", kinds=["Org"], name=name), synced)
    assert [f.type for f in relisted] == ["ADDED", "SYNCED"]
    assert relisted[0].payload["object"]["metadata"]["labels"]["step"] == "2"


async def test_bad_filters_are_named(server: ServerProcess, world: World) -> None:
    async with live(server) as client:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("resources", {"kinds": ["Tenant", "Nope"]}, "payload.kinds[1]"),
            ("resources", {"kinds": ["Tenant"], "selector": "a in"}, "payload.selector"),
            ("replicas", {"colour": "red"}, "payload.colour"),
            ("logs", {"tenant": world.tenant_a}, "payload.component"),
            ("runs", {"kind": "other"}, "payload.kind"),
        ]
        for channel, filters, field in cases:
            sub = await client.subscribe(channel, **filters)
            with pytest.raises(LiveError) as refused:
                await take(sub, synced)
            assert (refused.value.code, refused.value.field) == ("Invalid", field)


async def test_nodes_replicas_and_rollouts_follow_a_new_tenant(
    server: ServerProcess, node: NodeProcess, world: World
) -> None:
    fresh = f"c-{world.mark}"
    async with live(server) as client:
        nodes = await client.subscribe("nodes")
        listed = await take(nodes, synced)
        assert any(f.type == "ADDED" and f.payload["node"]["connected"] for f in listed)
        beat = (await take(nodes, lambda f: f.type == "heartbeat"))[-1].payload
        assert {"name", "cpu", "memory", "disk", "at"} <= set(beat)
        assert isinstance(beat["cpu"], (int, float)) and beat["at"]
        replicas = await client.subscribe("replicas", tenant=fresh)
        rollouts = await client.subscribe("rollouts", tenant=fresh)
        assert [f.type for f in await take(replicas, synced)] == ["SYNCED"]
        await take(rollouts, synced)
        await put(server, _tenant(fresh, world.stack, f"acme/c-{world.mark}"))
        added = await take(replicas, lambda f: f.type == "ADDED")
        assert added[-1].payload["replica"]["tenant"] == fresh
        rollout = (await take(rollouts, lambda f: f.type in ("ADDED", "MODIFIED")))[-1]
        assert rollout.payload["rollout"]["tenant"] == fresh
        with server.client() as http:
            assert http.delete(f"/api/v1/tenants/{fresh}").status_code == 200
        gone = await take(replicas, lambda f: f.type == "DELETED")
    assert gone[-1].payload["replica"]["tenant"] == fresh


async def test_logs_events_and_runs_follow(server: ServerProcess, world: World) -> None:
    async with live(server) as client:
        logs = await client.subscribe("logs", tenant=world.tenant_a, component="agent", tail=1)
        line = (await take(logs, lambda f: f.type == "line"))[-1].payload
        assert line["line"] == "tick" and line["at"] and line["replica"]
        events = await client.subscribe("events", source=world.source)
        agent_runs = await client.subscribe("runs", kind="agent", tenant=world.tenant_a)
        provisions = await client.subscribe("runs", kind="provision")
        for sub in (events, agent_runs, provisions):
            await take(sub, synced)
        await asyncio.to_thread(deliver, server, world.source, world.repo_a)
        event = (await take(events, lambda f: f.type == "ADDED"))[-1].payload["event"]
        assert (event["source"], event["tenant"]) == (world.source, world.tenant_a)
        run_id = await asyncio.to_thread(start_run, server, world.tenant_a)
        moved = await take(
            agent_runs, lambda f: f.payload["run"]["id"] == run_id and f.type == "MODIFIED"
        )
        assert [f.payload["kind"] for f in moved] == ["agent"] * len(moved)
        body = {"org": "acme", "tenant": f"p-{world.mark}", "stack": world.stack}
        with server.client() as http:
            started = http.post("/api/v1/provision/tenants", json=body)
        assert started.status_code in (200, 201, 202), started.text
        done = await take(provisions, lambda f: f.payload["run"]["state"] == "succeeded")
    assert done[0].type == "ADDED" and done[-1].payload["kind"] == "provision"
    assert done[-1].payload["run"]["steps"], "a provisioning run comes with its steps"


async def test_a_tenant_token_sees_nothing_of_another_tenant(
    server: ServerProcess, world: World
) -> None:
    a, b = world.tenant_a, world.tenant_b
    async with live(server, world.token_a) as client:
        assert client.connected is not None
        assert client.connected.payload["who"]["tenant"] == a
        resources = await client.subscribe(
            "resources",
            kinds=["Org", "Stack", "Tenant", "Schedule", "WebhookSource", "Secret", "Release"],
        )
        listed = await take(resources, synced)
        assert [f.payload["object"]["metadata"]["name"] for f in listed[:-1]] == [a]
        subs = {
            channel: await client.subscribe(channel)
            for channel in ("replicas", "events", "runs", "rollouts")
        }
        seen: list[Frame] = []
        for sub in subs.values():
            seen += await take(sub, synced)
        listed_replicas = [f for f in seen if f.channel == "replicas" and f.type == "ADDED"]
        assert all(f.payload["replica"]["tenant"] == a for f in listed_replicas)
        refusals: list[tuple[str, dict[str, str]]] = [
            ("nodes", {}),
            ("replicas", {"tenant": b}),
            ("events", {"tenant": b}),
            ("logs", {"tenant": b, "component": "agent"}),
            ("logs", {"tenant": f"nobody-{world.mark}", "component": "agent"}),
        ]
        for channel, filters in refusals:
            with pytest.raises(LiveError) as refused:
                await take(await client.subscribe(channel, **filters), synced)
            assert refused.value.code == "Forbidden", (channel, filters)
        # B changes on every channel first, then A: A's changes arrive, B's never.
        # A new tenant of B's side (replicas, a rollout) is seen through by an admin
        # first: the hub offers a change to every socket at once, so A's was offered
        # it then too, ahead of A's own changes awaited below.
        other = f"b2-{world.mark}"
        async with live(server) as admin:
            replicas = await admin.subscribe("replicas", tenant=other)
            rollouts = await admin.subscribe("rollouts", tenant=other)
            await take(replicas, synced)
            await take(rollouts, synced)
            await put(server, _tenant(other, world.stack, f"acme/b2-{world.mark}"))
            await take(replicas, lambda f: f.type == "ADDED")
            await take(rollouts, lambda f: f.type in ("ADDED", "MODIFIED"))
        await put(server, _tenant(b, world.stack, world.repo_b, side="b", touched="1"))
        await asyncio.to_thread(deliver, server, world.source, world.repo_b)
        await asyncio.to_thread(start_run, server, b)
        await put(server, _tenant(a, world.stack, world.repo_a, side="a", touched="1"))
        await asyncio.to_thread(deliver, server, world.source, world.repo_a)
        run_a = await asyncio.to_thread(start_run, server, a)
        seen += await take(
            resources, lambda f: f.payload["object"]["metadata"]["labels"].get("touched") == "1"
        )
        seen += await take(subs["events"], lambda f: f.type == "ADDED")
        seen += await take(subs["runs"], lambda f: f.payload["run"]["id"] == run_a)
        for channel in ("replicas", "rollouts"):
            seen += await arrived(subs[channel])
    with server.client() as http:
        assert http.delete(f"/api/v1/tenants/{other}").status_code == 200
    text = json.dumps([f.payload for f in seen])
    assert b not in text and world.repo_b not in text and other not in text


async def test_a_schedule_moved_to_another_tenant_leaves_its_old_one_as_it_was(
    server: ServerProcess, world: World
) -> None:
    a, b = world.tenant_a, world.tenant_b
    name = f"moved-{world.mark}"
    await put(server, schedule(name, a, cron="0 * * * *"))
    async with live(server, world.token_a) as client:
        sub = await client.subscribe("resources", kinds=["Schedule"], name=name)
        listed = await take(sub, synced)
        assert [f.type for f in listed] == ["ADDED", "SYNCED"]
        await put(server, schedule(name, b, cron="5 4 * * *"))
        gone = await take(sub, lambda f: f.type == "DELETED")
    with server.client() as http:
        assert http.delete(f"/api/v1/schedules/{name}").status_code == 200
    # (MODIFIED frames before it: the controller writes the schedule's status)
    assert gone[-1].payload["object"]["spec"]["tenant"] == a  # as A last saw it
    text = json.dumps([f.payload for f in gone])
    assert b not in text and "5 4 * * *" not in text


async def test_unauthenticated_callers_are_closed_4001(server: ServerProcess, world: World) -> None:
    with server.client() as http:
        node_key = http.post("/api/v1/tokens", json={"role": "node"}).json()["token"]
        viewer = http.post("/api/v1/tokens", json={"role": "viewer"}).json()
    for token in (None, "arm_nope_nope", node_key):
        with pytest.raises(Closed) as closed:
            async with live(server, token):
                pass
        assert closed.value.code == 4001, token
    # A session cookie works from this server's own pages, not from another site's.
    name = f"ws-{world.mark}"
    with server.client() as http:
        made = http.post(
            "/api/v1/users",
            json={"name": name, "password": "correct horse battery", "role": "viewer"},
        )
        assert made.status_code == 201, made.text
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as browser:
        login = await browser.post(
            "/api/v1/auth/login", json={"name": name, "password": "correct horse battery"}
        )
        assert login.status_code == 200, login.text
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    own = {"Cookie": cookie, "Origin": server.url}
    async with Live.connect(server.url, headers=own) as client:
        assert client.connected is not None and client.connected.payload["who"]["id"] == name
    foreign = {"Cookie": cookie, "Origin": "https://evil.example"}
    with pytest.raises(Closed) as closed:
        async with Live.connect(server.url, headers=foreign):
            pass
    assert closed.value.code == 4001 and "Origin" in closed.value.reason
    # A key revoked while its socket is open closes it.
    async with live(server, viewer["token"]) as client:
        sub = await client.subscribe("resources", kinds=["Org"])
        await take(sub, synced)
        with server.client() as http:
            assert http.post(f"/api/v1/tokens/{viewer['id']}/revoke").status_code == 200
        with pytest.raises(Closed) as closed:
            await take(sub, lambda f: False)
    assert closed.value.code == 4001


class RawSocket:
    """A WebSocket client by hand, over a socket with a tiny receive buffer: it sends
    frames, and reads only when told, so the server meets a client that stops reading."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: ServerProcess) -> RawSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {server.token}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, frame: dict[str, Any]) -> None:
        data = json.dumps(frame).encode()
        mask = os.urandom(4)
        assert len(data) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.writer.write(bytes([0x81, 0x80 | len(data)]) + mask + masked)

    async def frames_until_close(self) -> tuple[list[dict[str, Any]], int]:
        """Every frame the server sent, then its close code."""
        found: list[dict[str, Any]] = []
        while True:
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                size = int.from_bytes(await self.reader.readexactly(2))
            elif size == 127:
                size = int.from_bytes(await self.reader.readexactly(8))
            data = await self.reader.readexactly(size)
            if first & 0x0F == 0x8:
                return found, int.from_bytes(data[:2])
            if first & 0x0F == 0x1:
                found += [json.loads(line) for line in data.decode().split("\n")]

    def close(self) -> None:
        self.writer.close()


async def test_a_slow_client_is_closed_while_a_fast_one_gets_every_change_in_order(
    server: ServerProcess, world: World
) -> None:
    team = f"slow-{world.mark}"
    selector = f"team={team}"
    wide = {f"label-{i:02d}": "v" * 63 for i in range(40)}  # ~4 KiB a frame
    names = [f"{team}-{i:04d}" for i in range(3000)]
    # ~12 MiB of listing: more than any buffer. Small applies: each answers well
    # within the client's deadline on a loaded machine.
    for start in range(0, len(names), 250):
        await put(server, *(org(n, team=team, **wide) for n in names[start : start + 250]))
    slow = await RawSocket.open(server)
    try:
        subscribe = {"kinds": ["Org"], "selector": selector}
        slow.send({"channel": "resources", "type": "subscribe", "id": "s", "payload": subscribe})
        async with live(server) as fast:
            sub = await fast.subscribe("resources", kinds=["Org"], selector=selector)
            listed = await take(sub, synced)
            assert len(listed) == len(names) + 1
            # The slow one still holds most of its listing: what changes now piles up.
            changed = names[:200]
            await put(server, *(org(n, team=team, step="1") for n in changed))
            got = await take(sub, lambda f: f.payload["object"]["metadata"]["name"] == changed[-1])
            assert [f.type for f in got] == ["MODIFIED"] * len(changed)
            assert [f.payload["object"]["metadata"]["name"] for f in got] == changed
            versions = [position(f) for f in got]
            assert versions == sorted(versions) and len(set(versions)) == len(changed)
        # The slow one, reading at last, finds it was told and closed.
        async with asyncio.timeout(WAIT_S):
            found, code = await slow.frames_until_close()
    finally:
        slow.close()
    assert code == 4008
    assert [f["payload"]["code"] for f in found if f["type"] == "error"] == ["SlowConsumer"]
    assert not [f for f in found if f["type"] == "MODIFIED"]


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own whose sockets may hold 64 KiB of frames, counted or not."""
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("budgeted"),
        database_url=None,
        extra_env={"ARMILLARY_WS_QUEUE_BYTES": "65536", "ARMILLARY_WS_PING_S": "3600"},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.only_backend("sqlite")
async def test_a_listing_beyond_the_byte_budget_closes_the_client_as_slow(
    budgeted: ServerProcess,
) -> None:
    """A listing is not counted as frames, but its characters are: what a socket holds
    is bounded whatever it asks for (here ~120 KiB of listing, 64 KiB allowed)."""
    wide = {f"label-{i:02d}": "v" * 63 for i in range(40)}  # ~4 KiB a frame
    await put(budgeted, *(org(f"budget-{i:02d}", **wide) for i in range(30)))
    slow = await RawSocket.open(budgeted)
    try:
        subscribe = {"kinds": ["Org"]}
        slow.send({"channel": "resources", "type": "subscribe", "id": "s", "payload": subscribe})
        async with asyncio.timeout(WAIT_S):
            found, code = await slow.frames_until_close()
    finally:
        slow.close()
    assert code == 4008
    assert [f["payload"]["code"] for f in found if f["type"] == "error"] == ["SlowConsumer"]
    assert not [f for f in found if f["type"] == "SYNCED"]


@pytest.fixture(scope="module")
def pinging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own that pings every second and waits 8 s for the pong: long
    enough for the answering client on a loaded machine, short enough for the test."""
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("pinging"),
        database_url=None,
        extra_env={"ARMILLARY_WS_PING_S": "1", "ARMILLARY_WS_PONG_S": "8"},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.only_backend("sqlite")
async def test_a_client_that_does_not_answer_pings_is_closed_4000(pinging: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {pinging.token}"}
    async with live(pinging) as answering:
        async with websockets.connect(ws_url(pinging.url), additional_headers=headers) as mute:
            await mute.send("not json")  # refused, named; the socket stays open
            await mute.send(b"\x00binary")
            types: list[str] = []
            codes: list[str] = []
            with pytest.raises(websockets.ConnectionClosed) as ended:
                async with asyncio.timeout(WAIT_S):
                    while True:
                        for line in str(await mute.recv()).split("\n"):
                            frame = json.loads(line)
                            types.append(frame["type"])
                            if frame["type"] == "error":
                                codes.append(frame["payload"]["code"])
            assert ended.value.rcvd is not None and ended.value.rcvd.code == 4000
            assert "ping" in types
            assert codes == ["Invalid", "Invalid"]
        # The one that answers (the client does it) is still served.
        sub = await answering.subscribe("resources", kinds=["Org"])
        assert (await take(sub, synced))[-1].type == "SYNCED"


@pytest.fixture
def shared_database(postgres_server: str) -> Iterator[str]:
    yield from postgres.fresh_database(postgres_server)


async def test_a_socket_on_one_replica_sees_writes_made_through_another(
    shared_database: str, tmp_path: Path
) -> None:
    """Two server replicas on one Postgres: the second's live hub hears the first's
    writes through LISTEN/NOTIFY, webhook events (written in a batch) included."""
    first, second = start_replicas(shared_database, tmp_path, 2)
    try:
        source = f"gh-{uuid.uuid4().hex[:6]}"
        async with live(second) as client:
            orgs = await client.subscribe("resources", kinds=["Org"], name=f"{source}-org")
            events = await client.subscribe("events", source=source)
            await take(orgs, synced)
            await take(events, synced)
            await put(
                first,
                documents.secret(source, {"signing": SIGNING}),
                documents.webhook_source(source, source),
                org(f"{source}-org"),
            )
            added = await take(orgs, lambda f: f.type == "ADDED")
            assert added[-1].payload["object"]["metadata"]["name"] == f"{source}-org"
            await asyncio.to_thread(deliver, first, source, "acme/nowhere")
            event = (await take(events, lambda f: f.type == "ADDED"))[-1].payload["event"]
            assert event["source"] == source
    finally:
        for server in (first, second):
            server.stop()
