"""`armillary server --fd`: the inherited socket is served as what it is, a TCP socket,
so that asyncio turns Nagle's algorithm off on every connection it accepts (taken for a
Unix socket, each answer on a kept-alive connection waited for the client's delayed ACK)."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
import typer

from armillary.main import inherited_socket


async def test_connections_on_an_inherited_tcp_socket_have_no_delay() -> None:
    bound = socket.create_server(("127.0.0.1", 0))
    sock = inherited_socket(os.dup(bound.fileno()))
    bound.close()
    assert sock.family == socket.AF_INET
    nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = writer.get_extra_info("socket")
        nodelay.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=sock)
    async with server:
        host, port = sock.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        try:
            assert await asyncio.wait_for(nodelay, timeout=30) == 1
        finally:
            writer.close()


def test_a_descriptor_that_is_no_socket_is_refused_with_its_number() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(typer.BadParameter, match=f"descriptor {read_end}"):
            inherited_socket(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_datagram_socket_is_refused() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = os.dup(udp.fileno())
    udp.close()
    try:
        with pytest.raises(typer.BadParameter, match="not a stream socket"):
            inherited_socket(fd)
    finally:
        os.close(fd)
