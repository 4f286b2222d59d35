"""Secrets through real server processes, on SQLite and on Postgres: values are never in
the store (not in the database file, not in any row) nor in the key; every answer but
the admin's reveal shows `<redacted>`; a tenant's replicas get the values as env; a
wrong key stops the server at start with a clear message; a new key re-encrypts."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken

from armillary.auth import keys
from tests.support.api import apply, ready, replicas
from tests.support.cli import invoke
from tests.support.nodes import QUICKSTART, NodeProcess
from tests.support.postgres import fresh_database
from tests.support.processes import environ_pid, processes_marked
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

AGENT = ["python3", str(QUICKSTART / "apps" / "agent.py")]


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def value() -> str:
    """A value that appears nowhere unless Armillary leaks it."""
    return f"v4lue-{uuid.uuid4().hex}"


def secret(name: str, data: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "armillary.dev/v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "spec": {"data": data, **spec},
    }


def key_of(server: ServerProcess, role: str) -> str:
    with server.client() as http:
        response = http.post("/api/v1/tokens", json={"role": role, "description": "secrets"})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


# --- what the store holds --------------------------------------------------------------


def stored_text(home: Path, database_url: str | None) -> bytes:
    """Everything the store holds: the SQLite files byte for byte, or every row of every
    Postgres table as JSON."""
    if database_url is None:
        files = [home / "armillary.db", home / "armillary.db-wal"]
        return b"".join(f.read_bytes() for f in files if f.exists())

    async def dump() -> bytes:
        import asyncpg

        conn = await asyncpg.connect(database_url)
        try:
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
            out = []
            for row in tables:
                name = row["table_name"]
                out += await conn.fetch(f'SELECT row_to_json(t)::text AS j FROM "{name}" t')
            return "\n".join(r["j"] for r in out).encode()
        finally:
            await conn.close()

    return asyncio.run(dump())


def query(home: Path, database_url: str | None, sql: str) -> list[tuple[Any, ...]]:
    if database_url is None:
        with sqlite3.connect(home / "armillary.db") as conn:
            return list(conn.execute(sql))

    async def fetch() -> list[tuple[Any, ...]]:
        import asyncpg

        conn = await asyncpg.connect(database_url)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def key_material(key_text: str) -> list[bytes]:
    """The key in every form it could leak in: its text, its bytes, and the keys derived
    from it, raw, in base64 and in hex."""
    raw = keys.parse(key_text, source="test")
    found = [key_text.strip().encode(), raw, base64.b64encode(raw), raw.hex().encode()]
    for purpose in ("secrets", "secret-digests", "tenant-tokens", "provisioning-tokens"):
        derived = keys.derive(raw, purpose)
        found += [derived, base64.urlsafe_b64encode(derived), derived.hex().encode()]
    return found


def assert_nothing_leaks(
    server: ServerProcess,
    database_url: str | None,
    *,
    values: list[str],
    key_text: str,
    present: str,
) -> None:
    """No value and no key material in the store or the server's log; `present` (a
    Secret's name) must be found, or the search looked in the wrong place."""
    text = stored_text(server.home, database_url)
    assert present.encode() in text, "the store's contents were not read"
    for plain in values:
        assert plain.encode() not in text, "a secret value is in the store"
        assert plain not in server.log(), "a secret value is in the server's log"
    for material in key_material(key_text):
        assert material not in text, "key material is in the store"


def module_key(server: ServerProcess) -> str:
    return (server.home / "secret.key").read_text()  # dev mode made it


# --- the module's server -------------------------------------------------------------------


def test_applying_a_secret_twice_is_unchanged_and_every_answer_is_redacted(
    server: ServerProcess, tmp_path: Path
) -> None:
    name, password = fresh("db"), value()
    document = secret(name, {"PASSWORD": password, "USER": "app"})
    with server.client() as http:
        first = http.post("/api/v1/apply", json={"documents": [document]}).json()["results"]
        again = http.post("/api/v1/apply", json={"documents": [document]}).json()["results"]
        got = http.get(f"/api/v1/secrets/{name}")
        listed = http.get("/api/v1/secrets")
        put = http.put(f"/api/v1/secrets/{name}", json=document)
    assert [r["result"] for r in first + again] == ["created", "unchanged"]
    assert got.json()["spec"] == {"data": {"PASSWORD": "<redacted>", "USER": "<redacted>"}}
    assert put.json()["result"] == "unchanged"
    for answer in (got, listed, put):
        assert password not in answer.text and "hmac-sha256" not in answer.text

    path = tmp_path / "secret.yaml"
    path.write_text(json.dumps(secret(name, {"PASSWORD": value(), "USER": "app"})))
    for args in (
        ("get", "secrets"),
        ("get", "secret", name, "-o", "yaml"),
        ("describe", "secret", name),
    ):
        code, out, err = invoke(server, *args)
        assert code == 0, err
        assert name in out and password not in out
    assert "<redacted>" in invoke(server, "describe", "secret", name)[1]
    code, out, _ = invoke(server, "plan", "-f", str(path))
    assert code == 0 and 'spec.data.PASSWORD: "<redacted>" → "<redacted>"' in out
    assert "USER" not in out  # unchanged keys are not in the diff
    with server.client() as http:
        planned = http.post("/api/v1/plan", json={"documents": [json.loads(path.read_text())]})
    [change] = planned.json()["changes"]
    assert change["fields"] == [
        {"path": "spec.data.PASSWORD", "before": "<redacted>", "after": "<redacted>"}
    ]
    code, out, _ = invoke(server, "apply", "-f", str(path))
    assert code == 0 and "configured" in out
    new_password = json.loads(path.read_text())["spec"]["data"]["PASSWORD"]
    assert_nothing_leaks(
        server,
        server.database_url,
        values=[password, new_password],
        key_text=module_key(server),
        present=name,
    )


def test_a_bad_secret_is_refused_without_echoing_its_value(server: ServerProcess) -> None:
    name, password = fresh("bad"), value()
    bad = secret(name, {"PASSWORD": password, "PIN": 987654321})  # type: ignore[dict-item]
    bad["spec"]["data"]["PLACEHOLDER"] = "<redacted>"
    with server.client() as http:
        response = http.post("/api/v1/apply", json={"documents": [bad]})
    assert response.status_code == 422
    assert password not in response.text and "987654321" not in response.text
    paths = {i["path"] for i in response.json()["errors"]}
    assert paths == {"spec.data.PIN", "spec.data.PLACEHOLDER"}


def test_only_admins_reveal_values_or_write_or_plan_secrets(server: ServerProcess) -> None:
    name, password = fresh("api"), value()
    apply(server, secret(name, {"API_TOKEN": password}))
    viewer, developer = key_of(server, "viewer"), key_of(server, "developer")
    for token in (viewer, developer):
        with server.client(token=token) as http:
            assert http.get(f"/api/v1/secrets/{name}/reveal").status_code == 403
            shown = http.get(f"/api/v1/secrets/{name}")
            planned = http.post(
                "/api/v1/plan", json={"documents": [secret(name, {"API_TOKEN": "guess"})]}
            )
        assert shown.status_code == 200 and password not in shown.text
        assert planned.status_code == 403  # "unchanged" would confirm a guess
        code, out, err = invoke(server, "secret", "reveal", name, token=token)
        assert code == 7 and password not in out + err
    with server.client(token=developer) as http:
        changed = http.post("/api/v1/apply", json={"documents": [secret(name, {"API_TOKEN": "x"})]})
    assert changed.status_code == 403

    with server.client() as http:
        revealed = http.get(f"/api/v1/secrets/{name}/reveal")
    assert revealed.status_code == 200
    assert revealed.json()["spec"]["data"] == {"API_TOKEN": password}
    assert revealed.headers["cache-control"] == "no-store"
    code, out, _ = invoke(server, "secret", "reveal", name)
    assert (code, out) == (0, f"API_TOKEN={password}\n")
    with server.client() as http:
        missing = http.get(f"/api/v1/secrets/{fresh('none')}/reveal")
        audit = http.get("/api/v1/audit", params={"verb": "reveal", "name": name})
    assert missing.status_code == 404
    assert [e["name"] for e in audit.json()["items"]] == [name, name]  # the API's and the CLI's


def test_a_tenant_may_not_use_another_tenants_secret(server: ServerProcess) -> None:
    theirs, missing = fresh("theirs"), fresh("missing")
    apply(server, secret(theirs, {"A": value()}, tenant="globex"))
    tenant = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Tenant",
        "metadata": {"name": fresh("t")},
        "spec": {"org": "o", "stack": "s", "secrets": [{"name": theirs}, {"name": missing}]},
    }
    with server.client() as http:
        response = http.post("/api/v1/apply", json={"documents": [tenant]})
    assert response.status_code == 422
    issues = {i["path"]: i["message"] for i in response.json()["errors"]}
    assert "belongs to tenant 'globex'" in issues["spec.secrets[0].name"]
    assert "does not exist" in issues["spec.secrets[1].name"]


def test_deleting_a_secret_deletes_its_encrypted_values(server: ServerProcess) -> None:
    name = fresh("gone")
    apply(server, secret(name, {"A": value()}))
    with server.client() as http:
        uid = http.get(f"/api/v1/secrets/{name}").json()["metadata"]["uid"]
        sql = f"SELECT count(*) FROM secret_values WHERE uid = '{uid}'"
        assert query(server.home, server.database_url, sql) == [(1,)]
        gone = http.delete(f"/api/v1/secrets/{name}")
    assert gone.status_code == 200 and gone.json()["resource"]["spec"]["data"] == {
        "A": "<redacted>"
    }
    assert query(server.home, server.database_url, sql) == [(0,)]


def test_a_tenants_replicas_get_its_secrets_as_env_and_the_store_still_holds_none(
    server: ServerProcess, node: NodeProcess
) -> None:
    mark = uuid.uuid4().hex[:8]
    name, shared, stack = f"t-{mark}", f"shared-{mark}", f"s-{mark}"
    own, common, changed = value(), value(), value()
    component = {
        "name": "agent",
        "command": AGENT,
        "ports": [{"name": "http"}],
        "health_check": {"http": {"path": "/healthz", "port": "http"}, "interval_s": 0.2},
    }
    tenant = {
        "apiVersion": "armillary.dev/v1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {
            "org": "acme",
            "stack": stack,
            "env": {"ARMILLARY_TEST_MARK": mark, "DB_PASSWORD": "plain-env-loses"},
            "secrets": [{"name": f"own-{mark}"}, {"name": shared, "prefix": "SHARED_"}],
        },
    }
    apply(
        server,
        secret(f"own-{mark}", {"DB_PASSWORD": own}, tenant=name),
        secret(shared, {"TOKEN": common}),
        {
            "apiVersion": "armillary.dev/v1",
            "kind": "Stack",
            "metadata": {"name": stack},
            "spec": {"components": [component]},
        },
        tenant,
    )
    wait_for(lambda: ready(server, name), timeout_s=60, what="tenant Ready")
    [replica] = replicas(server, name)
    env = environ_pid(replica["report"]["pid"])
    assert (env["DB_PASSWORD"], env["SHARED_TOKEN"]) == (own, common)

    apply(server, secret(f"own-{mark}", {"DB_PASSWORD": changed}, tenant=name))

    def replaced() -> bool:
        found = replicas(server, name)
        pids = [r["report"]["pid"] for r in found if (r.get("report") or {}).get("pid")]
        return len(found) == 1 and bool(pids) and environ_pid(pids[0])["DB_PASSWORD"] == changed

    wait_for(replaced, timeout_s=60, what="the replica replaced with the new value")
    with server.client() as http:
        shown = http.get("/api/v1/replicas", params={"tenant": name}).text
    assert own not in shown and changed not in shown
    assert_nothing_leaks(
        server,
        server.database_url,
        values=[own, common, changed],
        key_text=module_key(server),
        present=shared,
    )
    assert all(v not in node.log() for v in (own, common, changed))
    state = node.data_dir / "node-state.json"
    assert state.stat().st_mode & 0o077 == 0  # it holds the env: the daemon's user only

    with server.client() as http:
        assert http.delete(f"/api/v1/tenants/{name}").status_code == 200
    wait_for(lambda: not processes_marked(mark), timeout_s=30, what="cleanup")


# --- servers of their own: wrong keys and rotation ------------------------------------------


@pytest.fixture
def own_database(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A database of the test's own (SQLite in its home, or a fresh Postgres database)."""
    if backend == "sqlite":
        yield None
        return
    yield from fresh_database(request.getfixturevalue("postgres_server"))


def own_server(home: Path, database_url: str | None, key: str, *previous: str) -> ServerProcess:
    env = {"ARMILLARY_SECRET_KEY": key, "ARMILLARY_MODE": "production"}
    if previous:
        env["ARMILLARY_SECRET_KEY_PREVIOUS"] = ",".join(previous)
    return ServerProcess(home=home, database_url=database_url, extra_env=env)


def test_a_wrong_key_stops_the_server_at_start_with_a_clear_error(
    own_database: str | None, tmp_path: Path
) -> None:
    right, wrong, password, name = keys.new_key(), keys.new_key(), value(), fresh("db")
    first = own_server(tmp_path, own_database, right)
    first.start()
    try:
        apply(first, secret(name, {"PASSWORD": password}))
    finally:
        first.stop()

    refused = own_server(tmp_path, own_database, wrong)
    with pytest.raises(RuntimeError, match="server exited"):
        refused.start()
    assert "ARMILLARY_SECRET_KEY is not the key this database's Secrets were encrypted with" in (
        refused.log()
    )
    assert password not in refused.log()

    again = own_server(tmp_path, own_database, right)
    again.start()
    try:
        with again.client() as http:
            assert http.get(f"/api/v1/secrets/{name}/reveal").json()["spec"]["data"] == {
                "PASSWORD": password
            }
        assert_nothing_leaks(again, own_database, values=[password], key_text=right, present=name)
    finally:
        again.stop()


def test_a_new_key_is_accepted_once_no_secret_is_stored(
    own_database: str | None, tmp_path: Path
) -> None:
    first_key, second_key, name = keys.new_key(), keys.new_key(), fresh("db")
    first = own_server(tmp_path, own_database, first_key)
    first.start()
    try:
        apply(first, secret(name, {"PASSWORD": value()}))
        with first.client() as http:
            assert http.delete(f"/api/v1/secrets/{name}").status_code == 200
    finally:
        first.stop()
    second = own_server(tmp_path, own_database, second_key)
    second.start()  # nothing was encrypted with the first key any more
    try:
        apply(second, secret(name, {"PASSWORD": "again"}))
        with second.client() as http:
            revealed = http.get(f"/api/v1/secrets/{name}/reveal").json()
        assert revealed["spec"]["data"] == {"PASSWORD": "again"}
    finally:
        second.stop()
    with pytest.raises(RuntimeError, match="server exited"):
        own_server(tmp_path, own_database, first_key).start()


def fernet(key_text: str) -> Fernet:
    derived = keys.derive(keys.parse(key_text, source="test"), "secrets")
    return Fernet(base64.urlsafe_b64encode(derived))


def opens(key_text: str, token: str) -> bool:
    try:
        fernet(key_text).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def test_a_new_key_with_the_old_one_as_previous_re_encrypts_everything(
    own_database: str | None, tmp_path: Path
) -> None:
    old, new, password, name = keys.new_key(), keys.new_key(), value(), fresh("db")
    sql_tokens = "SELECT ciphertext FROM secret_values UNION ALL SELECT token FROM key_checks"
    first = own_server(tmp_path, own_database, old)
    first.start()
    try:
        apply(first, secret(name, {"PASSWORD": password}))
        with first.client() as http:
            before = http.get(f"/api/v1/secrets/{name}").json()["metadata"]
    finally:
        first.stop()
    tokens = [row[0] for row in query(tmp_path, own_database, sql_tokens)]
    assert len(tokens) == 2 and all(opens(old, t) for t in tokens)

    rotated = own_server(tmp_path, own_database, new, old)
    rotated.start()
    rotated.stop()
    tokens = [row[0] for row in query(tmp_path, own_database, sql_tokens)]
    assert len(tokens) == 2
    assert all(opens(new, t) and not opens(old, t) for t in tokens)

    alone = own_server(tmp_path, own_database, new)
    alone.start()
    try:
        with alone.client() as http:
            revealed = http.get(f"/api/v1/secrets/{name}/reveal").json()
            applied = http.post(
                "/api/v1/apply", json={"documents": [secret(name, {"PASSWORD": password})]}
            )
        assert revealed["spec"]["data"] == {"PASSWORD": password}
        assert revealed["metadata"]["generation"] == before["generation"]  # no replica replaced
        assert applied.json()["results"][0]["result"] == "unchanged"  # digests moved too
        assert_nothing_leaks(alone, own_database, values=[password], key_text=new, present=name)
    finally:
        alone.stop()

    with pytest.raises(RuntimeError, match="server exited"):
        own_server(tmp_path, own_database, old).start()
