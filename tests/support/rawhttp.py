"""HTTP/1.1 over a bare socket, for tests that must choose when each byte is sent:
headers and no body, a body that stalls or trickles, a body the server may stop
reading. An HTTP client library would send the whole request, or retry, on its own.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from tests.support.servers import ServerProcess


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


def connect(server: ServerProcess, *, timeout_s: float = 30.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s)
    sock.settimeout(timeout_s)
    return sock


def head(method: str, path: str, headers: Mapping[str, str]) -> bytes:
    """The request line and headers (Host and Connection added), ready to send."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_answer(sock: socket.socket) -> Answer | None:
    """The next answer on `sock` (its body by Content-Length), or None if the server
    closed the connection (or reset it) before sending a whole head."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        raw_head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    except (ConnectionResetError, BrokenPipeError):
        return None
    return Answer(status=int(status_line.split(" ")[1]), headers=headers, body=body)


def closed(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (unread answer bytes are skipped); does
    not wait more than a moment."""
    sock.settimeout(0.05)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except TimeoutError:
        return False
    except OSError:  # reset
        return True
