"""Agent runs against a real server, a real node daemon and real agent processes
(tests/integration/agent_app.py), on SQLite and Postgres: a routed event runs its
tenant's agent, which gets a token of that tenant and nothing of the operator's;
the global and per-tenant limits hold (the agents log every call, and the maximum in
flight is counted from the log); a timeout fails the attempt and the run is retried;
a run that always fails ends dead and a manual retry queues it again; runs of events
acknowledged just before a kill -9 all complete once after the restart; a token the
agent echoes in its answer is neither stored nor shown; and on
Postgres two server replicas sharing the database never run one run twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from armillary.ingress import runner
from tests.support.api import apply, ready
from tests.support.cli import Cli
from tests.support.nodes import QUICKSTART, NodeProcess
from tests.support.ports import free_port
from tests.support.processes import http_ok
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

API = "armillary.dev/v1"
AGENT = Path(__file__).with_name("agent_app.py")
SECRET_VALUE = "agent-runs-signing"
SECRET_KEY = "Z4j0tS9o6m3Vq2l8kR1xW7yH5cN0bP4eD6fG8hJ2kL0="  # the same for every replica
GLOBAL_LIMIT, TENANT_LIMIT, MAX_ATTEMPTS, TIMEOUT_S = 3, 2, 3, 2
SERVER_ENV = {
    "ARMILLARY_SECRET_KEY": SECRET_KEY,
    "ARMILLARY_AGENT_RUN_CONCURRENCY": str(GLOBAL_LIMIT),
    "ARMILLARY_AGENT_RUN_TENANT_CONCURRENCY": str(TENANT_LIMIT),
    "ARMILLARY_AGENT_RUN_TIMEOUT_S": str(TIMEOUT_S),
    "ARMILLARY_AGENT_RUN_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "ARMILLARY_AGENT_RUN_BACKOFF_S": "0.2",
    "ARMILLARY_AGENT_RUN_BACKOFF_MAX_S": "1",
    "ARMILLARY_AGENT_RUN_LEASE_S": "3",
    "ARMILLARY_AGENT_RUN_POLL_S": "0.2",
}


@dataclass
class World:
    tenants: list[str]  # three tenants, each with one agent replica
    source: str
    repo: str  # routed to tenants[0]
    record: Path


@pytest.fixture(scope="module")
def world(
    server: ServerProcess, node: NodeProcess, tmp_path_factory: pytest.TempPathFactory
) -> World:
    record = tmp_path_factory.mktemp("agents")
    (record / "calls.log").touch()
    (record / "done").mkdir()
    mark = uuid.uuid4().hex[:6]
    tenants = [f"t{i}-{mark}" for i in range(3)]
    repo = f"acme/agent-{mark}"
    stack = {
        "name": "agent",
        "command": ["python3", str(AGENT)],  # on PATH for the tenants' users too
        "ports": [{"name": "http"}],
        "health_check": {"http": {"path": "/healthz", "port": "http"}, "interval_s": 0.3},
    }
    apply(
        server,
        {"apiVersion": API, "kind": "Org", "metadata": {"name": f"o-{mark}"}, "spec": {}},
        {
            "apiVersion": API,
            "kind": "Stack",
            "metadata": {"name": f"s-{mark}"},
            "spec": {"components": [stack]},
        },
        *(
            {
                "apiVersion": API,
                "kind": "Tenant",
                "metadata": {"name": t},
                "spec": {
                    "org": f"o-{mark}",
                    "stack": f"s-{mark}",
                    "env": {"AGENT_RECORD_DIR": str(record)},
                    "routing": {"github": [repo] if i == 0 else []},
                },
            }
            for i, t in enumerate(tenants)
        ),
        {
            "apiVersion": API,
            "kind": "Secret",
            "metadata": {"name": f"hook-{mark}"},
            "spec": {"data": {"signing": SECRET_VALUE}},
        },
        {
            "apiVersion": API,
            "kind": "WebhookSource",
            "metadata": {"name": f"gh-{mark}"},
            "spec": {
                "type": "github",
                "secrets": [{"name": f"hook-{mark}", "key": "signing"}],
                "routing": {"key_space": "github"},
            },
        },
    )
    for tenant in tenants:
        wait_for(lambda t=tenant: ready(server, t), timeout_s=60, what=f"{tenant} ready")  # type: ignore[misc]
    return World(tenants=tenants, source=f"gh-{mark}", repo=repo, record=record)


def deliver(server: ServerProcess, world: World, **agent: Any) -> dict[str, Any]:
    """A signed GitHub push for `world.repo`; the endpoint's answer (event and run)."""
    body = json.dumps(
        {"repository": {"full_name": world.repo}, "after": uuid.uuid4().hex, "agent": agent}
    ).encode()
    digest = hmac.new(SECRET_VALUE.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={digest}",
    }
    response = httpx.post(
        f"{server.url}/webhooks/{world.source}", content=body, headers=headers, timeout=30
    )
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


def start(server: ServerProcess, tenant: str, **input: Any) -> str:
    with server.client() as http:
        response = http.post("/api/v1/agents/run", json={"tenant": tenant, "input": input})
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def get_run(server: ServerProcess, run_id: str) -> dict[str, Any]:
    with server.client() as http:
        response = http.get(f"/api/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def ended(server: ServerProcess, run_ids: Iterable[str], state: str = "succeeded") -> bool:
    return all(get_run(server, r)["state"] == state for r in run_ids)


def calls(world: World, run_ids: Iterable[str]) -> list[dict[str, Any]]:
    wanted = set(run_ids)
    lines = (world.record / "calls.log").read_text().splitlines()
    return [c for c in map(json.loads, lines) if c["run"] in wanted]


def most_in_flight(log: list[dict[str, Any]]) -> int:
    now = peak = 0
    for call in log:
        now += {"start": 1, "end": -1}.get(call["e"], 0)
        peak = max(peak, now)
    return peak


def test_a_routed_event_runs_the_agent_with_a_token_of_its_tenant(
    server: ServerProcess, world: World
) -> None:
    answer = deliver(server, world)
    assert answer["state"] == "routed" and answer["run"]
    wait_for(lambda: ended(server, [answer["run"]]), what="the event's run")
    run = get_run(server, answer["run"])
    assert run["tenant"] == world.tenants[0] and run["event"] == answer["event"]
    assert run["requestedBy"] == f"webhook:{world.source}"
    assert run["statusCode"] == 200 and run["attempts"] == 1 and run["durationMs"] >= 0
    said = json.loads(run["answer"])
    assert said["event"] == answer["event"] and said["routingKey"] == world.repo
    assert said["whoami"]["role"] == "tenant" and said["whoami"]["tenant"] == world.tenants[0]
    with server.client() as http:
        listed = http.get("/api/v1/runs", params={"event": answer["event"]}).json()["items"]
    assert [r["id"] for r in listed] == [answer["run"]]


def test_an_operator_run_gets_its_input_and_never_the_operator_token(
    server: ServerProcess, world: World, cli: Cli
) -> None:
    run_id = start(server, world.tenants[1], question="why?")
    wait_for(lambda: ended(server, [run_id]), what="the operator's run")
    run = get_run(server, run_id)
    said = json.loads(run["answer"])
    assert said["input"] == {"question": "why?"} and said["event"] is None
    assert said["whoami"]["tenant"] == world.tenants[1]
    [call] = [c for c in calls(world, [run_id]) if c["e"] == "start"]
    assert call["auth"] is None and call["key"] == run_id  # the Idempotency-Key
    assert server.token not in (world.record / "calls.log").read_text() + run["answer"]
    code, out, _ = cli("agents", "run", world.tenants[2], "--input", '{"n": 1}', "--wait")
    assert code == 0, out
    assert "queued" in out and "succeeded: the agent answered 200" in out
    code, out, _ = cli("runs", "--tenant", world.tenants[2], "-o", "json")
    assert code == 0 and json.loads(out)[0]["input"] == {"n": 1}
    code, out, _ = cli("runs", "show", run_id)
    assert code == 0 and "attempt 1: answered 200" in out


def test_a_token_the_agent_echoes_is_neither_stored_nor_shown(
    server: ServerProcess, world: World, cli: Cli
) -> None:
    run_id = start(server, world.tenants[2], echo_token=True)
    wait_for(lambda: ended(server, [run_id]), what="the echoing run")
    [token] = [c["token"] for c in calls(world, [run_id]) if c["e"] == "token"]
    assert token.startswith("armt_")
    run = get_run(server, run_id)  # the answer as stored
    said = json.loads(run["answer"])
    assert said["token"] == runner.REDACTED
    assert said["whoami"]["tenant"] == world.tenants[2]  # the token worked all the same
    assert token not in json.dumps(run)
    code, out, _ = cli("runs", "show", run_id)
    assert code == 0 and runner.REDACTED in out and token not in out
    code, out, _ = cli(
        "agents", "run", world.tenants[2], "--input", '{"echo_token": true}', "--wait"
    )
    assert code == 0 and runner.REDACTED in out, out
    lines = (world.record / "calls.log").read_text().splitlines()
    echoed = [c["token"] for c in map(json.loads, lines) if c["e"] == "token"]
    assert len(echoed) == 2 and not any(t in out for t in echoed)


def test_the_quickstart_agent_echoes_nothing_secret() -> None:
    port = free_port()
    agent = subprocess.Popen(
        [sys.executable, str(QUICKSTART / "apps" / "agent.py")],
        env={**os.environ, "PORT": str(port), "ARMILLARY_TENANT": "acme"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: http_ok(port), what="the quickstart agent")
        call = {
            "run": "r-1",
            "tenant": "acme",
            "attempt": 1,
            "input": {"q": "status?"},
            "event": {
                "id": "e-1",
                "eventType": "push",
                "headers": {"X-Secret": "hdr-secret"},
                "body": "body-secret",
                "json": {"password": "json-secret"},
            },
            "context": {"api": "http://127.0.0.1:1"},
            "token": "armt_the-runs-own-token",
        }
        answer = httpx.post(f"http://127.0.0.1:{port}/run", json=call, timeout=10)
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert answer.status_code == 200
    said = answer.json()
    assert said["tenant"] == "acme" and said["handled"]["input"] == {"q": "status?"}
    for secret in ("armt_the-runs-own-token", "hdr-secret", "body-secret", "json-secret"):
        assert secret not in answer.text


def test_the_tenant_limit_holds(server: ServerProcess, world: World) -> None:
    run_ids = [start(server, world.tenants[1], sleep_s=1) for _ in range(6)]
    wait_for(lambda: ended(server, run_ids), timeout_s=60, what="six runs")
    assert most_in_flight(calls(world, run_ids)) == TENANT_LIMIT


def test_the_global_limit_holds(server: ServerProcess, world: World) -> None:
    run_ids = [start(server, t, sleep_s=1) for t in world.tenants for _ in range(3)]
    wait_for(lambda: ended(server, run_ids), timeout_s=60, what="nine runs")
    log = calls(world, run_ids)
    assert 2 <= most_in_flight(log) <= GLOBAL_LIMIT
    for tenant in world.tenants:
        assert most_in_flight([c for c in log if c["tenant"] == tenant]) <= TENANT_LIMIT


def test_a_timeout_fails_the_attempt_and_the_run_is_retried(
    server: ServerProcess, world: World
) -> None:
    run_id = start(server, world.tenants[2], sleep_first_s=TIMEOUT_S * 2)
    wait_for(lambda: ended(server, [run_id]), timeout_s=60, what="the slow run")
    run = get_run(server, run_id)
    assert run["attempts"] == 2
    first, second = run["history"]
    assert first["status"] is None and first["error"] == f"timed out after {TIMEOUT_S} s"
    assert second["status"] == 200 and second["error"] is None


def test_an_agent_that_always_fails_ends_dead_and_a_retry_queues_it_again(
    server: ServerProcess, world: World, cli: Cli
) -> None:
    run_id = start(server, world.tenants[0], status=500)
    wait_for(lambda: ended(server, [run_id], "dead"), timeout_s=60, what="a dead run")
    run = get_run(server, run_id)
    assert run["attempts"] == MAX_ATTEMPTS and run["finishedAt"] is not None
    assert [h["status"] for h in run["history"]] == [500] * MAX_ATTEMPTS
    assert run["error"] == "the agent answered 500"
    with server.client() as http:
        dead = http.get("/api/v1/runs", params={"state": "dead", "tenant": world.tenants[0]})
        assert run_id in {r["id"] for r in dead.json()["items"]}
    code, out, _ = cli("runs", "retry", run_id)
    assert code == 0 and f"run {run_id} queued" in out
    wait_for(
        lambda: len(get_run(server, run_id)["history"]) == 2 * MAX_ATTEMPTS,
        timeout_s=60,
        what="the retried run to use its fresh attempts",
    )
    assert wait_for(lambda: ended(server, [run_id], "dead"), what="dead again")
    done = start(server, world.tenants[0])
    wait_for(lambda: ended(server, [done]), what="a run that succeeds")
    with server.client() as http:
        assert http.post(f"/api/v1/runs/{done}/retry").status_code == 409


def test_runs_of_acknowledged_events_survive_kill_9_and_complete_once(
    server: ServerProcess, world: World
) -> None:
    answers = [deliver(server, world, sleep_s=0.3) for _ in range(10)]
    server.kill()
    server.start()
    run_ids = [a["run"] for a in answers]
    wait_for(lambda: ended(server, run_ids), timeout_s=90, what="the ten runs after a restart")
    for run_id in run_ids:
        run = get_run(server, run_id)
        succeeded = [h for h in run["history"] if h.get("status") == 200]
        assert len(succeeded) == 1, run["history"]
    done = Counter(c["run"] for c in calls(world, run_ids) if c["e"] == "done")
    assert done == dict.fromkeys(run_ids, 1)


@pytest.mark.only_backend("postgres")  # SQLite is one file on one machine: replicas share Postgres
def test_two_replicas_never_run_one_run_twice(
    server: ServerProcess, world: World, tmp_path: Path
) -> None:
    other = ServerProcess(
        home=tmp_path / "other", database_url=server.database_url, extra_env=SERVER_ENV
    )
    other.start()
    try:
        run_ids = []
        for n in range(20):
            target = server if n % 2 else other
            with httpx.Client(base_url=target.url, timeout=30) as http:
                response = http.post(
                    "/api/v1/agents/run",
                    json={"tenant": world.tenants[n % 3], "input": {"sleep_s": 0.2}},
                    headers={"Authorization": f"Bearer {server.token}"},
                )
            assert response.status_code == 202, response.text
            run_ids.append(response.json()["id"])
        wait_for(lambda: ended(server, run_ids), timeout_s=90, what="twenty runs")
    finally:
        other.stop()
    served = Counter(c["run"] for c in calls(world, run_ids) if c["e"] == "start")
    assert served == dict.fromkeys(run_ids, 1)
    histories = [get_run(server, run_id)["history"] for run_id in run_ids]
    assert all(len(h) == 1 for h in histories)
    assert len({h[0]["worker"] for h in histories}) == 2  # both replicas took runs
    assert most_in_flight(calls(world, run_ids)) <= GLOBAL_LIMIT
