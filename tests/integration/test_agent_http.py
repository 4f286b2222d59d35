"""The run worker's HTTP client (aiohttp's) against a real HTTP server on loopback:
answers with a Content-Length, chunked and ended by closing are read; a connection is
kept and used again, but not after a call its caller gave up on; an answer is clipped
at `max_bytes` and a long one is not read to its end (its connection closed); no more
than `keep` connections are open at once; an idle connection the server closed is
replaced and the call still made; what cannot be called or read says why."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from armillary.ingress import agent_http
from tests.support.waiting import wait_for_async


@dataclass
class Agent:
    """A server answering `POST /<mode>` as the mode says; counts its connections."""

    port: int = 0
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    calls: list[dict[str, object]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    cut: bool = False  # an answer's writing failed: the client closed before reading it

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode().split("\r\n")
                fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
                body = await reader.readexactly(int(fields["content-length"]))
                self.calls.append({"path": lines[0].split()[1], "body": json.loads(body), **fields})
                mode = lines[0].split()[1].strip("/")
                if not await self.answer(mode, writer):
                    return
        except ConnectionError:
            self.cut = True
        finally:
            self.open_now -= 1
            writer.close()

    async def answer(self, mode: str, writer: asyncio.StreamWriter) -> bool:
        """Write the answer; whether the connection stays open."""
        if mode == "chunked":
            writer.write(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        elif mode == "closed":  # no length: the body ends with the connection
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
            await writer.drain()
            return False
        elif mode == "big":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000)
        elif mode == "huge":  # far more than the socket buffers on both sides hold
            size = 64 * 1024 * 1024
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            for _ in range(size // 65536):
                writer.write(b"z" * 65536)
                await writer.drain()
        elif mode == "bigchunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"4000\r\n" + b"y" * 0x4000 + b"\r\n0\r\n\r\n")
        elif mode == "held":  # answers only when released
            await self.release.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nheld")
        elif mode == "garbage":
            writer.write(b"SMTP ready\r\n\r\n")
            await writer.drain()
            return False
        elif mode == "short":  # promises 10 bytes, sends 3, closes
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            await writer.drain()
            return False
        elif mode == "silent":  # reads the call, closes without a byte of answer
            return False
        elif mode == "once":  # answers, then closes the kept-alive connection at once
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce")
            await writer.drain()
            return False
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return True


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    found = Agent()
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    async with server:
        yield found


async def call(client: agent_http.Client, agent: Agent, mode: str) -> agent_http.Answer:
    url = f"http://127.0.0.1:{agent.port}/{mode}"
    return await client.post(
        url, b'{"run": "r1"}', headers={"Idempotency-Key": "r1"}, max_bytes=1000
    )


async def test_answers_are_read_and_a_connection_is_used_again(agent: Agent) -> None:
    client = agent_http.Client(keep=4)
    try:
        assert await call(client, agent, "plain") == agent_http.Answer(status=200, body=b"ok")
        chunked = await call(client, agent, "chunked")
        assert chunked == agent_http.Answer(status=201, body=b"hello world")
        assert (await call(client, agent, "plain")).body == b"ok"
        assert agent.connections == 1
        assert agent.calls[0]["body"] == {"run": "r1"}
        assert agent.calls[0]["idempotency-key"] == "r1"
        assert agent.calls[0]["content-type"] == "application/json"
        closed = await call(client, agent, "closed")
        assert closed == agent_http.Answer(status=200, body=b"until the end")
        assert (await call(client, agent, "plain")).body == b"ok"
        assert agent.connections == 2  # the closed one was not kept
    finally:
        await client.aclose()


async def test_an_answer_past_max_bytes_is_clipped_and_not_read_to_its_end(
    agent: Agent,
) -> None:
    client = agent_http.Client(keep=4)
    try:
        big = await call(client, agent, "big")
        assert big.status == 200 and big.body == b"x" * 1000
        assert (await call(client, agent, "plain")).body == b"ok"  # not the rest of big
        chunked = await call(client, agent, "bigchunked")
        assert chunked.status == 200 and chunked.body == b"y" * 1000
        assert (await call(client, agent, "plain")).body == b"ok"
        before = agent.connections
        huge = await call(client, agent, "huge")
        assert huge.status == 200 and huge.body == b"z" * 1000
        await wait_for_async(lambda: agent.cut, 30, what="the huge answer's connection cut")
        assert (await call(client, agent, "plain")).body == b"ok"
        assert agent.connections == before + 1  # a new one: the cut one was not kept
    finally:
        await client.aclose()


async def test_an_idle_connection_the_agent_closed_is_replaced(agent: Agent) -> None:
    client = agent_http.Client(keep=4)
    try:
        assert (await call(client, agent, "once")).body == b"once"
        await asyncio.sleep(0)  # the agent's close arrives, or not yet: both must work
        assert (await call(client, agent, "plain")).body == b"ok"
        assert agent.connections == 2
        assert [c["path"] for c in agent.calls] == ["/once", "/plain"]
    finally:
        await client.aclose()


async def test_a_call_given_up_on_drops_its_connection_and_keep_bounds_them(
    agent: Agent,
) -> None:
    client = agent_http.Client(keep=1)
    try:
        given_up = asyncio.create_task(call(client, agent, "held"))
        await wait_for_async(lambda: agent.calls, 30, what="the held call to arrive")
        given_up.cancel()  # as the worker's timeout does
        with pytest.raises(asyncio.CancelledError):
            await given_up
        agent.release.set()  # the answer to the call given up on must not be read as ours
        assert (await call(client, agent, "plain")).body == b"ok"
        assert agent.connections == 2
        agent.release.clear()
        held = asyncio.create_task(call(client, agent, "held"))
        plain = asyncio.create_task(call(client, agent, "plain"))
        await wait_for_async(lambda: len(agent.calls) == 3, 30, what="the held call")
        assert not plain.done()  # waits for the one connection `keep` allows
        agent.release.set()
        assert (await held).body == b"held" and (await plain).body == b"ok"
        assert agent.most_open == 1
        assert [c["path"] for c in agent.calls[2:]] == ["/held", "/plain"]
    finally:
        await client.aclose()


async def test_what_cannot_be_read_says_why(agent: Agent) -> None:
    client = agent_http.Client(keep=2)
    try:
        with pytest.raises(agent_http.CallError, match="not an HTTP answer"):
            await call(client, agent, "garbage")
        with pytest.raises(agent_http.CallError, match="reading the answer failed"):
            await call(client, agent, "short")
        with pytest.raises(agent_http.CallError, match="the connection closed before an answer"):
            await call(client, agent, "silent")
        assert [c["path"] for c in agent.calls[-2:]] == ["/silent", "/silent"]  # sent twice
        assert (await call(client, agent, "plain")).body == b"ok"
    finally:
        await client.aclose()


async def test_what_cannot_be_called_says_why(agent: Agent) -> None:
    client = agent_http.Client(keep=1)
    try:
        with pytest.raises(agent_http.CallError, match="expected an http:// URL"):
            await client.post("https://127.0.0.1/run", b"{}", headers={}, max_bytes=10)
        with pytest.raises(agent_http.CallError, match="expected an http:// URL"):
            await client.post("http:///run", b"{}", headers={}, max_bytes=10)
        server = await asyncio.start_server(agent.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        url = f"http://127.0.0.1:{port}/run"
        with pytest.raises(agent_http.CallError, match=f"connecting to 127.0.0.1:{port} failed"):
            await client.post(url, b"{}", headers={}, max_bytes=10)
        assert agent.connections == 0
    finally:
        await client.aclose()
