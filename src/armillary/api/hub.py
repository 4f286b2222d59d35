"""The node hub: one WebSocket session per connected node daemon.

`serve(websocket)` runs a node's whole session: `hello` (authenticated, registered,
its adopted replicas recorded), then concurrently — reading its reports and
heartbeats into the store, and pushing it its assignments whenever the feed says its
allocations changed. The first push is the node's whole set; after it, a push is an
`assignments.delta` of what changed (coalesced per burst of feed events): the session
remembers which allocation ids the node was sent, collects the ids the feed names for
this node, and reads only those rows — so neither side's cost per change grows with
the replicas already on the node.
Log and exec requests from API clients travel to the node as streams with ids;
chunks come back to the waiting request's queue. On disconnect the node is marked
not connected; its replicas keep running and it re-reports when it returns.

A node the node-loss controller declared lost (silent too long) is found again by
its next heartbeat or hello: `lost_at` cleared, an audit entry `found`. Its replicas
that were replaced meanwhile are no longer in its set, so the push the removal
caused (still queued on a socket that stayed open while the machine was stopped) or
the full set of a new session makes it stop them; whatever it says of them is
ignored, as reports of allocations not its own always are.

Every frame is decoded strictly (`protocol.parse`, `protocol.decode`). A session the
hub ends on purpose closes with `protocol.close_code(error)`: fatal codes for what
the daemon must change (its token, its messages), `CLOSE_TRY_AGAIN` for what may
pass (a `TemporaryError`, a store failure), after which the daemon reconnects.

An allocation that takes env from Secrets is stored with their names only; `_push`
decrypts the values into the env it sends, and nothing else here sees them.

Who may say hello as a node name: a node key bound to that name (an unbound key is
bound by its first hello; `auth.tokens.authenticate_node`), or an admin token. While
a daemon of that name is connected, a hello from another daemon (another `instance`
id: another data directory) is refused (4403) unless it asks for a takeover; a
takeover is written to the audit log and closes the old session (4409). The same
daemon coming back (its connection lost before the hub noticed) just replaces its
old session. Hellos are checked and registered one at a time, so two daemons racing
for one name cannot both pass the check. The key is checked again whenever the feed
announces a credential change and at every heartbeat (expiry): a session whose key
was revoked or expired is closed with 4401, and its daemon gets no more assignments.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import logging
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from armillary import protocol
from armillary.auth import secrets, tokens
from armillary.auth.access import Principal
from armillary.errors import (
    ArmillaryError,
    NotFound,
    PermanentError,
    ProtocolError,
    TemporaryError,
    Unauthorized,
)
from armillary.resources import text as storable
from armillary.store import allocations, audit, feed, nodes
from armillary.store.database import Database, Tx

log = logging.getLogger("armillary.hub")
HELLO_TIMEOUT_S = 10.0
HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_BATCH_S = 0.05
"""How long the heartbeat writer gathers before it writes what arrived, in one
transaction: a fleet of 2,000 nodes beating every second is 2,000 heartbeats a
second, which one by one would be 2,000 write transactions a second; batched, at
most 20, and a stored `heartbeat_at` is at most this much older than its beat (what
the node-loss controller judges by)."""
_SPEC_FIELDS = {f.name for f in dataclasses.fields(protocol.AllocationSpec)}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Session:
    """One connected node."""

    def __init__(
        self, name: str, websocket: WebSocket, *, token: str = "", instance: str = ""
    ) -> None:
        self.name = name
        self.token = token  # kept in memory only, to check the key again while connected
        self.instance = instance  # the daemon's id (`node.identity`); "" if it sent none
        self._websocket = websocket
        self._lock = asyncio.Lock()
        self._seq = itertools.count(1)
        self._streams: dict[str, asyncio.Queue[dict[str, Any] | None]] = {}
        self._stream_ids = itertools.count(1)
        self.held_back: dict[str, dict[str, Any]] = {}
        """Allocations a push could not send, by id: their `InvalidSpec` report, which
        stands in for what the node says of them while it stops them."""
        self.sent: set[str] | None = None
        """The ids of the allocations the node holds by what it was sent; None until
        the first (full) push of the session."""
        self.named: set[str] = set()
        """Allocation ids of this node the feed named (added or removed) since the
        last push: the only rows the next push reads."""
        self.push_due = False  # the node's set (or record) changed since the last push
        self.recheck_due = False  # a credential changed: check this session's key again
        self.woken = asyncio.Event()

    def heard(self, event: feed.Change) -> None:
        """Note a change the hub routed to this session (called synchronously by the
        feed: quick, no I/O); the session's watcher acts on it."""
        if event.kind == feed.CREDENTIAL:
            self.recheck_due = True
        elif event.kind == feed.RESYNC:  # changes may have been missed: all of it again
            self.recheck_due = True
            self.sent = None
            self.push_due = True
        elif event.kind == "Allocation":
            if event.report:
                return  # a report: nothing to send back
            self.named.add(event.name)
            return  # the same transaction moved the epoch: that event wakes the watcher
        else:  # Node, Assignments
            self.push_due = True
        self.woken.set()

    async def send(self, kind: str, payload: dict[str, Any]) -> None:
        async with self._lock:
            envelope = {"type": kind, "seq": next(self._seq), "payload": payload}
            await self._websocket.send_json(envelope)

    def open_stream(self) -> tuple[str, asyncio.Queue[dict[str, Any] | None]]:
        """A new stream id and the queue its chunks arrive on (None: it ended)."""
        stream = f"s{next(self._stream_ids)}"
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._streams[stream] = queue
        return stream, queue

    async def close_stream(self, stream: str) -> None:
        if self._streams.pop(stream, None) is not None:
            # The node may be gone already; its streams went with it.
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await self.send("stream.close", {"stream": stream})

    def deliver(self, chunk: protocol.StreamChunk) -> None:
        """Hand `chunk` to its stream's queue (its fields that are set); an end closes it."""
        queue = self._streams.get(chunk.stream)
        if queue is None:
            return
        queue.put_nowait({k: v for k, v in protocol.encode(chunk).items() if v is not None})
        if isinstance(chunk, protocol.LogsEnd | protocol.ExecEnd):
            queue.put_nowait(None)
            self._streams.pop(chunk.stream, None)

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await self._websocket.close(code=code, reason=reason)

    def end_all(self) -> None:
        for queue in self._streams.values():
            queue.put_nowait({"error": f"node {self.name} disconnected"})
            queue.put_nowait(None)
        self._streams.clear()


class Hub:
    def __init__(
        self,
        db: Database,
        *,
        vault: secrets.Vault,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        server: str | None = None,
    ) -> None:
        self._db = db
        self._server = server  # this replica's name, recorded with each node it holds
        self._vault = vault
        self._heartbeat_interval_s = heartbeat_interval_s
        self.sessions: dict[str, Session] = {}
        self._hellos = asyncio.Lock()  # one hello checked and registered at a time
        self._beats: dict[str, tuple[Session, dict[str, Any], dt.datetime]] = {}
        self._beat_arrived = asyncio.Event()
        # One watcher of the feed for every session, routing by node name: a queue per
        # session would make every write visit every connected node.
        db.feed.watch(self._route)

    def _route(self, event: feed.Change) -> None:
        if event.kind in (feed.CREDENTIAL, feed.RESYNC):
            for session in self.sessions.values():
                session.heard(event)
        elif event.node is not None and event.kind in ("Allocation", "Node", "Assignments"):
            addressed = self.sessions.get(event.node)
            if addressed is not None:
                addressed.heard(event)

    def session(self, node: str) -> Session:
        session = self.sessions.get(node)
        if session is None:
            raise NotFound(f"node {node!r} is not connected")
        return session

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            hello = await self._receive_hello(websocket)
            session = Session(hello.node, websocket, token=hello.token, instance=hello.instance)
            async with self._hellos:
                previous = await self._admit(hello, websocket)
                self.sessions[hello.node] = session
        except WebSocketDisconnect:
            return
        except Exception as exc:  # the session's boundary: every failure gets its close code
            await _refuse(websocket, exc)
            return
        if previous is not None:  # one daemon per node name: the one just admitted
            previous.end_all()
            await previous.close(
                protocol.CLOSE_REPLACED, "another daemon connected with this node name"
            )
        try:
            await session.send(
                "welcome",
                protocol.encode(
                    protocol.Welcome(
                        node=hello.node, heartbeat_interval_s=self._heartbeat_interval_s
                    )
                ),
            )
            await self._push(session)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read(session, websocket))
                group.create_task(self._watch(session))
        except* WebSocketDisconnect:
            log.info("node %s disconnected", hello.node)
        except* Unauthorized as group:
            log.warning("node %s closed: %s", hello.node, group.exceptions[0])
            await session.close(protocol.CLOSE_UNAUTHORIZED, str(group.exceptions[0])[:120])
        except* ProtocolError as group:
            log.warning("node %s broke the protocol: %s", hello.node, group.exceptions[0])
            await session.close(protocol.CLOSE_INVALID, str(group.exceptions[0])[:120])
        except* Exception as group:  # a store failure: the daemon reconnects and re-reports
            log.error("node %s session failed", hello.node, exc_info=group.exceptions[0])
            await session.close(protocol.CLOSE_TRY_AGAIN, _reason(group.exceptions[0]))
        finally:
            session.end_all()
            # Under the hello lock: a daemon restarted at once may say hello while this
            # session ends; unserialised, this write could land after its registration
            # and leave a connected node marked disconnected (found on Postgres).
            async with self._hellos:
                if self.sessions.get(hello.node) is session:
                    del self.sessions[hello.node]
                    async with self._db.write() as conn:
                        await nodes.disconnect(conn, hello.node, server=self._server)

    async def _receive_hello(self, websocket: WebSocket) -> protocol.Hello:
        envelope = await asyncio.wait_for(_receive(websocket), timeout=HELLO_TIMEOUT_S)
        if envelope.type != "hello":
            raise ProtocolError(f"expected a hello first, got {envelope.type!r}")
        hello = protocol.decode(protocol.Hello, envelope.payload)
        if hello.protocol != protocol.PROTOCOL_VERSION:
            raise ProtocolError(
                f"node speaks protocol {hello.protocol}; "
                f"this server speaks {protocol.PROTOCOL_VERSION}"
            )
        return hello

    async def _admit(self, hello: protocol.Hello, websocket: WebSocket) -> Session | None:
        """Authenticate `hello`, check who holds its name, register the node; the live
        session it replaces, if any. Called under `_hellos`."""
        live = self.sessions.get(hello.node)
        same_daemon = live is not None and bool(live.instance) and live.instance == hello.instance
        taking_over = live is not None and not same_daemon
        source = websocket.client.host if websocket.client else None
        async with self._db.write() as conn:
            login = await tokens.authenticate_node(conn, hello.token, node=hello.node, now=_now())
            if taking_over and not hello.takeover:
                raise PermanentError(
                    f"node {hello.node!r} is connected from another daemon; start this one "
                    "with --takeover to replace it"
                )
            if login.bound_now:
                await audit.record(
                    conn,
                    _audited(
                        login.principal,
                        verb="bind",
                        kind="ApiKey",
                        name=login.principal.id,
                        source=source,
                        detail={"node": hello.node},
                    ),
                )
            if taking_over:
                await audit.record(
                    conn,
                    _audited(
                        login.principal,
                        verb="takeover",
                        kind="Node",
                        name=hello.node,
                        source=source,
                        detail={"address": hello.address},
                    ),
                )
            known = await nodes.get(conn, hello.node)
            if known is not None and known.lost_at is not None:
                await audit.record(conn, _found(hello.node, how="hello"))
                log.warning("node %s, declared lost, says hello again: Ready", hello.node)
            await nodes.register(
                conn,
                name=hello.node,
                address=hello.address,
                labels=hello.labels,
                capacity=protocol.encode(hello.capacity),
                now=_now(),
                isolation=hello.isolation,
                server=self._server,
            )
            await allocations.record_reports(
                conn, hello.node, [protocol.encode(r) for r in hello.running], now=_now()
            )
        if taking_over:
            log.warning("node %s taken over by a daemon at %s", hello.node, hello.address)
        log.info("node %s connected from %s", hello.node, hello.address)
        return live

    async def _read(self, session: Session, websocket: WebSocket) -> None:
        while True:
            envelope = await _receive(websocket)
            if envelope.type == "report":
                report = protocol.decode(protocol.Report, envelope.payload)
                reports = [protocol.encode(r) for r in report.replicas]
                reports = [session.held_back.get(r["id"], r) for r in reports]
                async with self._db.write() as conn:
                    await allocations.record_reports(conn, session.name, reports, now=_now())
            elif envelope.type == "heartbeat":
                beat = protocol.decode(protocol.Heartbeat, envelope.payload)
                usage = protocol.encode(beat.usage)
                if beat.replicas:  # kept with the node's: one write per beat, as before
                    usage["replicas"] = {k: protocol.encode(v) for k, v in beat.replicas.items()}
                arrived = _now()
                if beat.sent_at is not None:  # how far the node's clock is behind ours
                    usage["clock_skew_s"] = round(arrived.timestamp() - beat.sent_at, 3)
                self._beats[session.name] = (session, usage, arrived)
                self._beat_arrived.set()
            elif envelope.type in protocol.STREAM_CHUNKS:
                kind = protocol.STREAM_CHUNKS[envelope.type]
                session.deliver(protocol.decode(kind, envelope.payload, path=envelope.type))
            else:
                log.warning("node %s sent an unknown message type %r", session.name, envelope.type)

    async def record_heartbeats(self) -> None:
        """Run until cancelled: store the heartbeats that arrived, every
        `HEARTBEAT_BATCH_S` at most, in one transaction (each node's latest, with the
        time it arrived). Each key is checked again as it is (revoked or expired: the
        session is closed with 4401, its heartbeat not stored). A store failure loses
        one beat of each node, logged; the next ones are stored."""
        while True:
            await self._beat_arrived.wait()
            await asyncio.sleep(HEARTBEAT_BATCH_S)
            self._beat_arrived.clear()
            beats, self._beats = self._beats, {}
            try:
                refused = await self._store_heartbeats(beats)
            except Exception:
                log.exception("storing %d heartbeat(s) failed", len(beats))
                continue
            for session, reason in refused:
                log.warning("node %s closed: %s", session.name, reason)
                session.end_all()
                await session.close(protocol.CLOSE_UNAUTHORIZED, reason[:120])

    async def _store_heartbeats(
        self, beats: dict[str, tuple[Session, dict[str, Any], dt.datetime]]
    ) -> list[tuple[Session, str]]:
        """Store `beats` of the sessions still live; the sessions whose key no longer
        holds, and why. A key shared by many nodes (an admin token) is checked once."""
        refused: list[tuple[Session, str]] = []
        verdicts: dict[str, str | None] = {}  # token → why it is refused (None: it holds)
        rows: list[tuple[str, dict[str, Any], dt.datetime]] = []
        async with self._db.write() as conn:
            for name, (session, usage, at) in beats.items():
                if self.sessions.get(name) is not session:
                    continue  # ended or replaced meanwhile
                if session.token not in verdicts:
                    try:
                        await _still_allowed(conn, session)
                        verdicts[session.token] = None
                    except Unauthorized as exc:
                        verdicts[session.token] = str(exc)
                reason = verdicts[session.token]
                if reason is not None:
                    refused.append((session, reason))
                else:
                    rows.append((name, usage, at))
            for name in await nodes.heartbeats(conn, rows):
                await audit.record(conn, _found(name, how="heartbeat"))
                log.warning("node %s, declared lost, is heard again: Ready", name)
        return refused

    async def _watch(self, session: Session) -> None:
        while True:
            # Only a change of the node's set moves its epoch (an Assignments event);
            # reports about its allocations need no push back. A burst of changes
            # that lands before the watcher runs is one push.
            await session.woken.wait()
            session.woken.clear()
            if session.recheck_due:
                session.recheck_due = False
                async with self._db.read() as conn:
                    await _still_allowed(conn, session)
            if session.push_due:
                session.push_due = False
                await self._push(session)

    async def _push(self, session: Session) -> None:
        """Send the node what changed in its set: the whole set on the session's first
        push, an `assignments.delta` of the rows the feed named after that."""
        named, session.named = session.named, set()
        sent = session.sent
        async with self._db.read() as conn:
            node = await nodes.require(conn, session.name)
            if sent is None:
                added = await allocations.for_node(conn, session.name)
                gone: set[str] = set()
            else:
                # Allocations never move between nodes and never change their spec:
                # a named id is new (not sent yet, and there) or gone (sent, not there).
                there = await allocations.present(conn, session.name, named & sent)
                gone = (named & sent) - there
                added = await allocations.by_ids(conn, session.name, named - sent)
            resolver = secrets.Resolver(conn, self._vault)
            specs = [(a, await _spec(a, resolver)) for a in added]
        sendable, refused = _sendable(specs)
        for allocation_id in gone:
            session.held_back.pop(allocation_id, None)
        session.held_back.update((report["id"], report) for report in refused)
        if refused:
            async with self._db.write() as conn:
                await allocations.record_reports(conn, session.name, refused, now=_now())
        # What was held back counts as sent: it is not sent again each time the feed
        # names it, and its removal goes out like any other (a node ignores an id it
        # does not hold).
        handled = {spec["id"] for spec in sendable} | {report["id"] for report in refused}
        if sent is None:
            session.sent = handled
            await session.send("assignments", {"epoch": node.epoch, "allocations": sendable})
            return
        sent.difference_update(gone)
        sent.update(handled)
        if not sendable and not gone:
            return
        delta = {"epoch": node.epoch, "add": sendable, "remove": sorted(gone)}
        await session.send("assignments.delta", delta)


async def _still_allowed(conn: Tx, session: Session) -> None:
    """`Unauthorized` once the key `session` said hello with is revoked or expired."""
    who = await tokens.authenticate(conn, session.token, now=_now())
    if who.role not in ("admin", "node"):  # cannot happen to a stored key; kept strict
        raise Unauthorized("a node needs a node key or an admin token")


def _audited(
    who: Principal, *, verb: str, kind: str, name: str, source: str | None, detail: dict[str, Any]
) -> audit.Entry:
    """The audit row of something a node's hello did (no HTTP request: `verb` names it)."""
    return audit.Entry(
        at=_now(),
        verb=verb,
        outcome="ok",
        principal=who.name,
        principal_kind=who.kind,
        role=who.role,
        path="/api/v1/nodes/connect",
        kind=kind,
        name=name,
        source=source,
        detail=detail,
    )


def _found(node: str, *, how: str) -> audit.Entry:
    """The audit entry of a lost node heard again (by its `heartbeat` or `hello`): the
    counterpart of the node-loss controller's `lost`."""
    return audit.Entry(
        at=_now(),
        verb="found",
        outcome="ok",
        principal=f"node:{node}",
        principal_kind="node",
        path="/api/v1/nodes/connect",
        kind="Node",
        name=node,
        detail={"by": how},
    )


async def _receive(websocket: WebSocket) -> protocol.Envelope:
    """The next envelope; `ProtocolError` for a frame that is not one (binary too)."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    text = message.get("text")
    if text is None:
        raise ProtocolError("Envelope: expected a text frame of JSON, got a binary frame")
    return protocol.parse(text)


async def _refuse(websocket: WebSocket, exc: Exception) -> None:
    """Close a session whose hello failed, with the code saying whether to come back."""
    code = protocol.close_code(exc)
    if code != protocol.CLOSE_TRY_AGAIN:
        log.warning("node refused (%d): %s", code, exc)
    elif isinstance(exc, TemporaryError | TimeoutError):
        log.warning("node hello failed for now (%s); it will reconnect", exc)
    else:
        log.error("node hello failed; it will reconnect", exc_info=exc)
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(code=code, reason=_reason(exc))


def _reason(exc: BaseException) -> str:
    """The close reason for `exc`: our own errors say what they are; anything else (a
    store error quoting SQL, say) stays in the server log, unseen by the node."""
    if isinstance(exc, ArmillaryError):
        return str(exc)[:120]
    if isinstance(exc, TimeoutError):
        return f"no hello within {HELLO_TIMEOUT_S:g} s"
    return "the server could not take the session now; reconnect"


def _sendable(
    specs: list[tuple[allocations.Allocation, dict[str, Any]]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The specs that can be sent, and an `InvalidSpec` report for each that cannot.

    Strings are checked where they come in (`resources.text`), but an allocation
    made from data stored before that (or a Secret's value) could still hold text
    no frame can encode; it would close the whole session, and every tenant on the
    node would lose its supervisor. It is held back and marked instead."""
    sendable: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for allocation, spec in specs:
        problem = next(storable.problems(spec), None)
        if problem is None:
            sendable.append(spec)
            continue
        loc, message = problem
        where = ".".join(str(part).encode("ascii", "backslashreplace").decode() for part in loc)
        log.error(
            "allocation %s of tenant %s is not sent: %s %s",
            allocation.id,
            allocation.tenant,
            where,
            message,
        )
        report = protocol.ReplicaReport(
            id=allocation.id,
            state="failed",
            reason="InvalidSpec",
            message=f"the server cannot send this replica's spec: {where} {message}",
        )
        refused.append(protocol.encode(report))
    return sendable, refused


async def _spec(allocation: allocations.Allocation, resolver: secrets.Resolver) -> dict[str, Any]:
    """What a node is sent for `allocation`: the protocol's fields, with the values of
    its Secrets (last, so they win) in `env`."""
    spec = {k: v for k, v in allocation.spec.items() if k in _SPEC_FIELDS}
    uses = allocation.spec.get("secrets")
    if not uses:
        return spec
    env, missing = await resolver.env(uses, tenant=allocation.tenant)
    if missing:
        log.warning(
            "allocation %s of tenant %s is sent without the env of secrets %s: missing, "
            "another tenant's, or unreadable",
            allocation.id,
            allocation.tenant,
            ", ".join(missing),
        )
    return {**spec, "env": {**spec.get("env", {}), **env}}
