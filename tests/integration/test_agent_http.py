"""The run worker's HTTP client against a real HTTP server on loopback: answers with a
Content-Length, chunked and ended by closing are read; a connection is kept and used
again, but not after an answer clipped at `max_bytes`; an idle connection the server
closed is replaced and the call still made; what cannot be called says why."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from armillary.ingress import agent_http


@dataclass
class Agent:
    """A server answering `POST /<mode>` as the mode says; counts its connections."""

    port: int = 0
    connections: int = 0
    calls: list[dict[str, object]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
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
        finally:
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


async def test_an_answer_past_max_bytes_is_clipped_and_its_connection_dropped(
    agent: Agent,
) -> None:
    client = agent_http.Client(keep=4)
    try:
        big = await call(client, agent, "big")
        assert big.status == 200 and big.body == b"x" * 1000
        assert (await call(client, agent, "plain")).body == b"ok"  # not the rest of big
        assert agent.connections == 2
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


async def test_what_cannot_be_called_says_why(agent: Agent) -> None:
    client = agent_http.Client(keep=1)
    with pytest.raises(agent_http.CallError, match="expected an http:// URL"):
        await client.post("https://127.0.0.1/run", b"{}", headers={}, max_bytes=10)
    server = await asyncio.start_server(agent.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(agent_http.CallError, match=f"connecting to 127.0.0.1:{port} failed"):
        await client.post(f"http://127.0.0.1:{port}/run", b"{}", headers={}, max_bytes=10)
