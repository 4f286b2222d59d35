"""The client's answer to 429 and 503: the error it raises (`RateLimited`,
`TemporaryError`, each with the Retry-After delay), and which requests it sends again
after what wait. The server is an `httpx.MockTransport` answering from a script; the
sleep is injected and only recorded, so nothing here waits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from armillary import client
from armillary.errors import RateLimited, TemporaryError

NODES: dict[str, Any] = {"items": []}


class Script:
    """Answers requests in order from `answers` (status, Retry-After or None), then 200."""

    def __init__(self, *answers: tuple[int, str | None]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            return httpx.Response(200, json=NODES if request.method == "GET" else RUN)
        status, retry_after = self.answers.pop(0)
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        problem = {"type": "about:blank", "title": "Busy", "status": status, "detail": "busy"}
        return httpx.Response(status, json=problem, headers=headers)

    async def sleep(self, delay_s: float) -> None:
        self.sleeps.append(delay_s)

    def client(self, retry: client.Retry | None = None) -> client.Client:
        transport = httpx.MockTransport(self)
        return client.Client(
            "http://armillary.test", "arm_x", retry=retry, sleep=self.sleep, transport=transport
        )


RUN: dict[str, Any] = {
    "id": "r1",
    "action": "provision",
    "org": "acme",
    "tenant": "acme-a",
    "idempotencyKey": "k1",
    "state": "pending",
    "error": None,
    "createdAt": "2026-12-01T00:00:00Z",
    "startedAt": None,
    "finishedAt": None,
    "steps": [],
}


async def test_a_get_is_sent_again_after_retry_after_then_succeeds() -> None:
    script = Script((503, "2"), (429, "1"))
    async with script.client() as api:
        assert await api.nodes() == []
    # Backoff 0.5 s then 1 s, but never less than the server asked for.
    assert script.sleeps == [2.0, 1.0]
    assert len(script.requests) == 3


async def test_without_retry_after_the_backoff_doubles_up_to_its_cap() -> None:
    script = Script(*[(502, None)] * 5)
    async with script.client(client.Retry(attempts=6, base_s=0.5, cap_s=3.0)) as api:
        await api.nodes()
    assert script.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_a_429_past_the_last_attempt_is_rate_limited_with_its_delay() -> None:
    script = Script(*[(429, "3")] * 10)
    async with script.client(client.Retry(attempts=4)) as api:
        with pytest.raises(RateLimited) as raised:
            await api.nodes()
    assert raised.value.delay_s == 3.0
    assert script.sleeps == [3.0, 3.0, 3.0]
    assert len(script.requests) == 4


async def test_a_503_past_the_last_attempt_is_a_temporary_error_not_rate_limited() -> None:
    script = Script(*[(503, "4")] * 10)
    async with script.client(client.Retry(attempts=2)) as api:
        with pytest.raises(TemporaryError) as raised:
            await api.nodes()
    assert not isinstance(raised.value, RateLimited)
    assert raised.value.delay_s == 4.0
    assert "server error" not in str(raised.value)


async def test_a_wait_longer_than_the_cap_is_raised_at_once() -> None:
    script = Script((429, "600"))
    async with script.client(client.Retry(cap_s=10.0)) as api:
        with pytest.raises(RateLimited) as raised:
            await api.nodes()
    assert raised.value.delay_s == 600.0
    assert script.sleeps == [] and len(script.requests) == 1


async def test_a_post_is_not_sent_twice_unless_it_carries_an_idempotency_key() -> None:
    plain = Script((503, "1"))
    async with plain.client() as api:
        with pytest.raises(TemporaryError):
            await api.run_schedule("nightly")
    assert len(plain.requests) == 1 and plain.sleeps == []

    keyed = Script((503, "1"))
    async with keyed.client() as api:
        run = await api.provision({"org": "acme", "tenant": "acme-a", "idempotency_key": "k1"})
    assert run.id == "r1" and run.idempotency_key == "k1"
    assert len(keyed.requests) == 2 and keyed.sleeps == [1.0]


@pytest.mark.parametrize(
    ("attempt", "retry_after_s", "expected"),
    [
        (1, None, 0.5),
        (2, None, 1.0),
        (3, None, 2.0),
        (4, None, None),  # four sends made: no more
        (1, 3.0, 3.0),
        (3, 1.0, 2.0),  # the backoff is longer than the server asked
        (1, 11.0, None),  # longer than the cap: tell the caller now
    ],
)
def test_delay_schedule(attempt: int, retry_after_s: float | None, expected: float | None) -> None:
    retry = client.Retry(attempts=4, base_s=0.5, cap_s=10.0)
    assert retry.delay_s(attempt, retry_after_s) == expected
