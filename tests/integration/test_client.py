"""The client against a real server over loopback whose rate limit is tiny (one
request per credential, refilled every 5 s): a GET answered 429 is sent again after
the Retry-After the server gave and succeeds; with the attempts used up the caller
gets `RateLimited` with that delay, not "server error 429"."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from armillary import client
from armillary.errors import RateLimited
from tests.support.servers import ServerProcess


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("limited"),
        database_url=None,  # the client's behaviour, not the store's: SQLite is enough
        extra_env={"ARMILLARY_RATE_LIMIT_PER_S": "0.2", "ARMILLARY_RATE_LIMIT_BURST": "1"},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_a_rate_limited_get_waits_retry_after_and_then_succeeds(
    limited: ServerProcess,
) -> None:
    waits: list[float] = []

    async def sleep(delay_s: float) -> None:
        waits.append(delay_s)
        await asyncio.sleep(delay_s)  # really wait: the server's bucket refills in time

    async with client.Client(limited.url, limited.token, sleep=sleep) as api:
        await api.nodes()  # the one request the bucket holds
        assert await api.nodes() == []  # refused once, then let through
    assert len(waits) == 1 and waits[0] >= 1 and waits[0].is_integer(), waits


async def test_with_attempts_used_up_the_caller_gets_rate_limited(limited: ServerProcess) -> None:
    waits: list[float] = []

    async def sleep(delay_s: float) -> None:
        waits.append(delay_s)  # recorded only: the retry comes at once, and is refused

    retry = client.Retry(attempts=2)
    async with client.Client(limited.url, limited.token, retry=retry, sleep=sleep) as api:
        with pytest.raises(RateLimited) as raised:
            for _ in range(3):  # the bucket holds at most one request
                await api.nodes()
    assert raised.value.delay_s >= 1 and "server error" not in str(raised.value)
    assert len(waits) == 1 and waits[0] >= 1  # one wait for the one retry allowed
