"""X-Forwarded-For is believed only from configured proxies (ARMILLARY_TRUSTED_PROXIES,
none by default): a client on the server's machine cannot choose the address the
audit log records nor the rate-limit bucket it takes from. Real servers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import ServerProcess

FORWARDED = "203.0.113.9"


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server told that the proxy in front of it is on loopback."""
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("proxied"),
        database_url=None,
        extra_env={"ARMILLARY_TRUSTED_PROXIES": json.dumps(["127.0.0.1", "::1"])},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def recorded_source(server: ServerProcess, forwarded_for: str) -> str | None:
    """The client address the audit log records for a request sent from loopback
    with `X-Forwarded-For: forwarded_for`."""
    request_id = f"fwd-{uuid.uuid4().hex}"
    headers = {"X-Forwarded-For": forwarded_for, "X-Request-ID": request_id}
    with server.client() as http:
        sent = http.post("/api/v1/plan", json={"documents": []}, headers=headers)
        assert sent.status_code == 200, sent.text
        [row] = http.get("/api/v1/audit", params={"request_id": request_id}).json()["items"]
    source: str | None = row["source"]
    return source


def logins_refused_for_rate(server: ServerProcess, forwarded_for: list[str]) -> int:
    """How many of these unauthenticated login attempts (one per address given in
    X-Forwarded-For) were refused by the per-address login limit (30 at once)."""
    refused = 0
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for address in forwarded_for:
            # An empty body is refused as input (422) after the rate limit took its token.
            answer = http.post("/api/v1/auth/login", json={}, headers={"X-Forwarded-For": address})
            assert answer.status_code in (422, 429), answer.text
            refused += answer.status_code == 429
    return refused


def test_a_forwarded_address_from_loopback_is_not_believed_by_default(
    server: ServerProcess,
) -> None:
    assert recorded_source(server, FORWARDED) == "127.0.0.1"
    # Sixty attempts, each claiming another address: all come from one bucket.
    addresses = [f"198.51.100.{i}" for i in range(60)]
    assert logins_refused_for_rate(server, addresses) > 0


def test_a_configured_proxy_is_believed(behind_proxy: ServerProcess) -> None:
    assert recorded_source(behind_proxy, FORWARDED) == FORWARDED
    addresses = [f"198.51.100.{i}" for i in range(60)]
    assert logins_refused_for_rate(behind_proxy, addresses) == 0  # a bucket each
    assert logins_refused_for_rate(behind_proxy, ["192.0.2.1"] * 60) > 0
