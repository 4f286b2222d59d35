"""No oracles: what a caller is refused never tells whether the thing exists.

A tenant token gets the same bytes for another tenant's existing tenant, schedule,
runs and replica logs as for names that exist nowhere; a locked-out user gets the
same bytes as an unknown one, after the same work (one argon2id check each). Timing
itself is not measured (no wall-clock asserts): the work is, by counting the calls
of the password check on the real login path. Real server, SQLite and Postgres.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import httpx
import pytest

from armillary.auth import passwords, sessions
from armillary.store import users
from armillary.store.database import Database
from tests.support.api import apply, provision, replicas
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

API = "armillary.dev/v1"
SLEEPER = {"name": "agent", "command": ["python3", "-c", "import time; time.sleep(3600)"]}
JOB = {"name": "job", "type": "job", "command": ["true"]}
MISSING_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class World:
    a: str
    b: str
    token_a: str
    provision_run_b: str
    agent_run_b: str
    replica_b: str
    schedule_b: str


@pytest.fixture(scope="module")
def world(server: ServerProcess, node: NodeProcess) -> World:
    mark = uuid.uuid4().hex[:6]
    a, b, org, stack = f"a-{mark}", f"b-{mark}", f"o-{mark}", f"s-{mark}"
    apply(
        server,
        {"apiVersion": API, "kind": "Org", "metadata": {"name": org}, "spec": {}},
        {
            "apiVersion": API,
            "kind": "Stack",
            "metadata": {"name": stack},
            "spec": {"components": [SLEEPER, JOB]},
        },
        {
            "apiVersion": API,
            "kind": "Tenant",
            "metadata": {"name": a},
            "spec": {"org": org, "stack": stack},
        },
    )
    run_id = provision(server, org=org, tenant=b, stack=stack)
    with server.client() as http:
        apply(
            server,
            {
                "apiVersion": API,
                "kind": "Schedule",
                "metadata": {"name": f"sched-{mark}"},
                "spec": {"tenant": b, "component": "job", "cron": "0 4 * * *"},
            },
        )
        agent_run = http.post("/api/v1/agents/run", json={"tenant": b, "input": {}}).json()
        token = http.post(f"/api/v1/tenants/{a}/tokens", json={}).json()["token"]
    replica = wait_for(lambda: replicas(server, b, "agent"), what="B's replica")[0]
    return World(
        a=a,
        b=b,
        token_a=token,
        provision_run_b=run_id,
        agent_run_b=agent_run["id"],
        replica_b=replica["id"],
        schedule_b=f"sched-{mark}",
    )


def test_a_tenant_token_gets_one_answer_for_others_and_for_nothing(
    server: ServerProcess, world: World
) -> None:
    b = world.b
    pairs = [  # (another tenant's existing thing, a thing that exists nowhere)
        (f"/api/v1/tenants/{b}", "/api/v1/tenants/nobody-here"),
        (f"/api/v1/schedules/{world.schedule_b}", "/api/v1/schedules/nobody-here"),
        (f"/api/v1/schedules/{b}-nightly/runs", "/api/v1/schedules/nobody-here-nightly/runs"),
        (f"/api/v1/provision/runs/{world.provision_run_b}", f"/api/v1/provision/runs/{MISSING_ID}"),
        (f"/api/v1/runs/{world.agent_run_b}", f"/api/v1/runs/{MISSING_ID}"),
        (f"/api/v1/replicas/{world.replica_b}/logs", f"/api/v1/replicas/{MISSING_ID}/logs"),
        (f"/api/v1/tenants/{b}/rollouts", "/api/v1/tenants/nobody-here/rollouts"),
    ]
    headers = {"Authorization": f"Bearer {world.token_a}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        assert http.get(f"/api/v1/tenants/{world.a}").status_code == 200
        for existing, missing in pairs:
            theirs, nothing = http.get(existing), http.get(missing)
            assert theirs.status_code == 404, (existing, theirs.text)
            assert (theirs.status_code, theirs.content) == (nothing.status_code, nothing.content), (
                existing,
                missing,
            )


def test_a_locked_user_and_an_unknown_one_get_the_same_bytes(server: ServerProcess) -> None:
    name = f"lo-{uuid.uuid4().hex[:6]}"
    password = "a long enough secret"
    with server.client() as admin:
        created = admin.post(
            "/api/v1/users", json={"name": name, "password": password, "role": "viewer"}
        )
        assert created.status_code == 201, created.text
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        for _ in range(5):  # ARMILLARY_LOGIN_MAX_FAILURES defaults to 5
            wrong = browser.post("/api/v1/auth/login", json={"name": name, "password": "nope"})
            assert wrong.status_code == 401
        locked = browser.post("/api/v1/auth/login", json={"name": name, "password": password})
        unknown = browser.post(
            "/api/v1/auth/login", json={"name": f"ghost-{name}", "password": password}
        )
    assert locked.status_code == 401
    assert (locked.status_code, locked.content) == (unknown.status_code, unknown.content)
    with server.client() as admin:
        [user] = [u for u in admin.get("/api/v1/users").json()["items"] if u["name"] == name]
        assert user["lockedUntil"] is not None  # it is locked: the answer does not say so


async def test_every_refused_login_does_the_same_work(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One argon2id check per attempt, whoever asks: the time an answer takes does not
    tell an unknown name from a locked or disabled user."""
    checks: list[str] = []
    real = passwords.verify

    def counted(password_hash: str, password: str) -> bool:
        checks.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(passwords, "verify", counted)
    now = dt.datetime.now(dt.UTC)
    secret = "a long enough secret"
    async with store.write() as conn:
        for user in ("locked", "disabled", "plain"):
            await sessions.create_user(conn, name=user, password=secret, role="viewer", now=now)
        later = now + dt.timedelta(hours=1)

        await users.update_user(conn, "locked", locked_until=later)
        await users.update_user(conn, "disabled", disabled_at=now)
    attempts = {
        "unknown": ("ghost", secret),
        "locked, right password": ("locked", secret),
        "disabled, right password": ("disabled", secret),
        "wrong password": ("plain", "not the password"),
    }
    answers = {}
    for case, (name, password) in attempts.items():
        checks.clear()
        async with store.write() as conn:
            answer = await sessions.login(
                conn,
                name=name,
                password=password,
                now=now,
                ttl_s=60,
                max_failures=100,
                lockout_s=60,
            )
        assert len(checks) == 1, case
        answers[case] = answer
    assert {repr(a) for a in answers.values()} == {
        repr(sessions.LoginRefused(reason=sessions.REFUSED))
    }
