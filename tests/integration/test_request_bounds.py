"""What a request may make the server hold, against a real server on SQLite and
Postgres: API requests are authenticated before their body is read (a flood of
large unauthenticated bodies costs no memory, a non-JSON one is a 401, not a 422),
bodies read by all requests in flight share a budget (503), a body or request
headers that do not arrive in time close the connection (408 when it can still be
said), webhook deliveries included."""

from __future__ import annotations

import select
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support import documents, rawhttp
from tests.support.api import apply
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

MiB = 1024 * 1024
BUDGET_BYTES = 10 * MiB  # more than one 8 MiB body, less than two
SERVER_ENV = {
    "ARMILLARY_BODY_TIMEOUT_S": "2",
    "ARMILLARY_HEADER_TIMEOUT_S": "2",
    "ARMILLARY_MAX_BODY_BYTES_IN_FLIGHT": str(BUDGET_BYTES),
}
FLOOD = 60
# 8 MB of JSON (under the 8 MiB default limit) that parses to millions of objects.
BIG_JSON = b"[" + b"0," * 3_999_999 + b"0]"
CHUNK = 256 * 1024
GIVE_UP_S = 60.0  # a loop's safety cap, never an expectation


def memory_kib(server: ServerProcess, field: str) -> int:
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{server.process.pid}/status")


def send_body(
    server: ServerProcess, path: str, body: bytes, headers: dict[str, str]
) -> rawhttp.Answer | None:
    """POST `body`, stopping as soon as the server answers or hangs up."""
    with rawhttp.connect(server) as sock:
        head = {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}
        sock.sendall(rawhttp.head("POST", path, head))
        view = memoryview(body)
        for start in range(0, len(body), CHUNK):
            if select.select([sock], [], [], 0)[0]:
                break  # answered (or closed) before the body was all sent
            try:
                sock.sendall(view[start : start + CHUNK])
            except (BrokenPipeError, ConnectionResetError):
                break
        return rawhttp.read_answer(sock)


def test_unauthenticated_bodies_are_not_read(server: ServerProcess) -> None:
    # The peak since now, from what the server holds now.
    assert server.process is not None
    Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")
    before_kib = memory_kib(server, "VmRSS")

    with ThreadPoolExecutor(max_workers=FLOOD) as pool:
        answers = list(
            pool.map(lambda _: send_body(server, "/api/v1/apply", BIG_JSON, {}), range(FLOOD))
        )

    peak_kib = memory_kib(server, "VmHWM")
    statuses = [a.status if a is not None else "closed" for a in answers]
    assert set(statuses) <= {401, "closed"}, statuses
    assert statuses.count(401) > 0, statuses
    assert (peak_kib - before_kib) * 1024 < 64 * MiB, (before_kib, peak_kib)
    with server.client() as http:  # and it still serves
        assert http.get("/api/v1/nodes").status_code == 200


@pytest.mark.parametrize("token", [None, "arm_nope_nope", "armt_not-a-jwt"])
def test_a_body_without_a_valid_credential_is_a_401_whatever_it_is(
    server: ServerProcess, token: str | None
) -> None:
    with server.client(token=token) as http:
        for content_type, body in [
            ("text/plain", b"not json at all"),
            ("application/json", b"{"),
            ("application/json", b'{"documents": []}'),
        ]:
            answer = http.post(
                "/api/v1/apply", content=body, headers={"Content-Type": content_type}
            )
            assert answer.status_code == 401, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.headers["x-request-id"]


def test_authenticated_bodies_are_still_parsed_and_limited(server: ServerProcess) -> None:
    mark = uuid.uuid4().hex[:6]
    apply(server, {**documents.ACME, "metadata": {"name": f"org-{mark}"}})
    with server.client() as http:
        assert http.get(f"/api/v1/orgs/org-{mark}").status_code == 200
        bad = http.post("/api/v1/apply", content=b"{", headers={"Content-Type": "application/json"})
        assert bad.status_code in (400, 422), bad.text
        declared = http.post("/api/v1/apply", content=b" " * (8 * MiB + 1))
        assert declared.status_code == 413, declared.text
        assert f"the limit is {8 * MiB} (ARMILLARY_MAX_BODY_BYTES)" in declared.text

        def chunks() -> Iterator[bytes]:
            for _ in range(9):
                yield b" " * MiB

        streamed = http.post("/api/v1/apply", content=chunks())
        assert streamed.status_code == 413, streamed.text


def test_login_needs_no_credential_and_takes_only_a_small_body(server: ServerProcess) -> None:
    with server.client(token=None) as http:
        wrong = http.post("/api/v1/auth/login", json={"name": "nobody", "password": "x"})
        assert wrong.status_code == 401, wrong.text
        assert "wrong user name or password" in wrong.text
        padded = {"name": "nobody", "password": "x" * (32 * 1024)}
        huge = http.post("/api/v1/auth/login", json=padded)
        assert huge.status_code == 413, huge.text


def test_bodies_in_flight_share_one_budget(server: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {server.token}"}
    stalled_length = 8_000_000
    second = b" " * (BUDGET_BYTES - stalled_length + 1)

    def over_budget() -> rawhttp.Answer | None:
        # One request holds most of the budget (its declared length, taken when its
        # body is first read) while it stalls; the next one does not fit beside it.
        with rawhttp.connect(server) as stalled:
            head = {**auth, "Content-Type": "application/json"}
            stalled.sendall(
                rawhttp.head(
                    "POST", "/api/v1/apply", {**head, "Content-Length": str(stalled_length)}
                )
                + b"[" * 100
            )
            answer = send_body(server, "/api/v1/apply", second, auth)
            return answer if answer is not None and answer.status == 503 else None

    refused = wait_for(over_budget, timeout_s=GIVE_UP_S, every_s=0.1, what="a 503")
    assert refused.headers["retry-after"] == "1"
    [row] = audited(server, refused.headers["x-request-id"])
    assert row["status"] == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert b"ARMILLARY_MAX_BODY_BYTES_IN_FLIGHT" in refused.body
    # Held bytes are given back: once the stalled one is gone, the same body goes in.
    with server.client() as http:
        answer = wait_for(
            lambda: (r := http.post("/api/v1/apply", content=second)).status_code != 503 and r,
            timeout_s=GIVE_UP_S,
            what="the budget given back",
        )
        assert answer.status_code in (400, 422), answer.text


def trickle_until_answered(sock: socket.socket) -> rawhttp.Answer | None:
    """Send one byte of the body at a time, a while apart, until the server answers."""
    give_up = time.monotonic() + GIVE_UP_S
    while time.monotonic() < give_up:
        if select.select([sock], [], [], 0.2)[0]:
            return rawhttp.read_answer(sock)
        try:
            sock.sendall(b" ")
        except (BrokenPipeError, ConnectionResetError):
            return rawhttp.read_answer(sock)
    raise AssertionError("the server never answered a trickled body")


def audited(server: ServerProcess, request_id: str) -> list[dict[str, Any]]:
    with server.client() as http:
        answer = http.get("/api/v1/audit", params={"request_id": request_id})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_a_trickled_body_times_out(server: ServerProcess) -> None:
    request_id = uuid.uuid4().hex
    with rawhttp.connect(server) as sock:
        headers = {
            "Authorization": f"Bearer {server.token}",
            "Content-Length": "100000",
            "X-Request-ID": request_id,
        }
        sock.sendall(rawhttp.head("POST", "/api/v1/apply", headers))
        answer = trickle_until_answered(sock)
        assert answer is not None
        assert answer.status == 408, answer
        assert answer.headers["connection"] == "close"
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["x-request-id"] == request_id
        assert answer.headers["x-content-type-options"] == "nosniff"
        wait_for(lambda: rawhttp.closed(sock), what="the connection closed")
    [row] = audited(server, request_id)
    assert (row["status"], row["outcome"]) == (408, "timed-out")


def test_a_stalled_webhook_body_times_out(server: ServerProcess) -> None:
    mark = uuid.uuid4().hex[:6]
    secret = f"hooks-{mark}"
    apply(
        server,
        documents.secret(secret, {"signing": "s3cret"}),
        documents.webhook_source(f"gh-{mark}", secret),
    )
    with rawhttp.connect(server) as sock:
        sock.sendall(rawhttp.head("POST", f"/webhooks/gh-{mark}", {"Content-Length": "5000"}))
        sock.sendall(b'{"ref": ')
        answer = rawhttp.read_answer(sock)  # the socket's own timeout is the cap
        assert answer is not None
        assert answer.status == 408, answer
        assert answer.headers["x-request-id"]
        wait_for(lambda: rawhttp.closed(sock), what="the connection closed")


@pytest.mark.parametrize("sent", [b"", b"POST /api/v1/apply HTTP/1.1\r\nHost: 127"])
def test_connections_without_a_whole_request_are_closed(server: ServerProcess, sent: bytes) -> None:
    with rawhttp.connect(server) as sock:
        sock.sendall(sent)
        wait_for(lambda: rawhttp.closed(sock), timeout_s=GIVE_UP_S, what="the connection closed")


def test_after_an_answer_the_next_request_must_come_in_time(server: ServerProcess) -> None:
    with rawhttp.connect(server) as sock:
        sock.sendall(rawhttp.head("GET", "/healthz", {}))
        answer = rawhttp.read_answer(sock)
        assert answer is not None and answer.status == 200
        sock.sendall(b"GET /heal")  # and then nothing more
        wait_for(lambda: rawhttp.closed(sock), timeout_s=GIVE_UP_S, what="the connection closed")


def test_settings_are_checked_at_start(tmp_path: Path) -> None:
    proc = ServerProcess(
        home=tmp_path,
        database_url=None,
        extra_env={"ARMILLARY_MAX_BODY_BYTES_IN_FLIGHT": str(1024 * 1024)},
    )
    with pytest.raises(RuntimeError, match="ARMILLARY_MAX_BODY_BYTES"):
        proc.start()
    proc.stop()
