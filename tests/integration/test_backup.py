"""`armillary backup` and `armillary restore` on a real store, SQLite and Postgres: a
backup taken while a server takes a stream of webhook deliveries restores every event
answered 202 before it started; a store holding rows is refused and left as it was; a
damaged file is refused, naming where it is broken, and the store is left untouched."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, inspect, select

from armillary.store import tables
from armillary.store.database import Database
from tests.support import documents, postgres
from tests.support.api import apply
from tests.support.cli import Outcome, run
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

SECRET_VALUE = "backup-signing-secret"
API = "armillary.dev/v1"
RATE_PER_S = 500
SENDERS = 64


@pytest.fixture(scope="module")
def source(server: ServerProcess) -> str:
    mark = uuid.uuid4().hex[:6]
    apply(
        server,
        {
            "apiVersion": API,
            "kind": "Secret",
            "metadata": {"name": f"hooks-{mark}"},
            "spec": {"data": {"signing": SECRET_VALUE}},
        },
        documents.webhook_source(f"gh-{mark}", f"hooks-{mark}"),
    )
    return f"gh-{mark}"


@dataclass
class Deliveries:
    """Signed deliveries sent from a thread at about RATE_PER_S over keep-alive
    connections spoken directly on asyncio streams (httpx costs several times the CPU
    per request, on cores the server shares), each 202 recorded with its delivery id
    and the monotonic time its answer arrived."""

    server: ServerProcess
    source: str
    answered: list[tuple[float, str]] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._send_all())

    def stop(self) -> None:
        self._stop.set()

    async def _send_all(self) -> None:
        await asyncio.gather(*(self._sender(n) for n in range(SENDERS)))

    async def _sender(self, n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        interval_s = SENDERS / RATE_PER_S
        next_at = time.monotonic() + n * interval_s / SENDERS
        try:
            while not self._stop.is_set():
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval_s
                delivery = str(uuid.uuid4())
                writer.write(signed_request(self.source, delivery))
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                status = int(head[9:12])
                if status == 202:
                    self.answered.append((time.monotonic(), delivery))
                else:
                    self.refused.append(status)
        finally:
            writer.close()


def signed_request(source: str, delivery: str) -> bytes:
    """A whole HTTP/1.1 request: a signed GitHub push of a body never sent before."""
    body = json.dumps({"repository": {"full_name": "nobody/x"}, "n": delivery}).encode()
    digest = hmac.new(SECRET_VALUE.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST /webhooks/{source} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nX-GitHub-Event: push\r\n"
        f"X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: sha256={digest}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@pytest.fixture
def deliveries(server: ServerProcess, source: str) -> Iterator[Deliveries]:
    sending = Deliveries(server, source)
    thread = threading.Thread(target=sending.run, daemon=True)
    thread.start()
    try:
        yield sending
    finally:
        sending.stop()
        thread.join(timeout=60)


def store_env(url: str) -> dict[str, str | None]:
    return {"ARMILLARY_DATABASE_URL": url}


def deliver_one(server: ServerProcess, source: str) -> httpx.Response:
    """One signed delivery, of a body never sent before."""
    body = json.dumps({"repository": {"full_name": "nobody/x"}, "n": uuid.uuid4().hex})
    digest = hmac.new(SECRET_VALUE.encode(), body.encode(), hashlib.sha256).hexdigest()
    with server.client(token=None) as http:
        return http.post(
            f"/webhooks/{source}",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": f"sha256={digest}",
            },
        )


def backup(server: ServerProcess, path: Path) -> None:
    """`armillary backup` in a process of its own, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "armillary", "backup", str(path)],
        env=server.env(),
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()


def restore(url: str, path: Path) -> Outcome:
    return run("restore", str(path), env=store_env(url))


async def _held(url: str) -> dict[str, int]:
    db = await Database.open(url, migrate=False)
    try:
        async with db.read() as conn:

            def count(sync: object) -> dict[str, int]:
                present = set(inspect(sync).get_table_names())
                return {
                    t.name: int(sync.execute(select(func.count()).select_from(t)).scalar_one())  # type: ignore[attr-defined]
                    for t in tables.metadata.sorted_tables
                    if t.name in present
                }

            return await conn.run_sync(count)
    finally:
        await db.close()


def held(url: str) -> dict[str, int]:
    """Rows per table in the store at `url` (only tables that exist)."""
    return asyncio.run(_held(url))


async def _event_ids(url: str, column: str = "id") -> set[str]:
    db = await Database.open(url, migrate=False)
    try:
        async with db.read() as conn:
            found = await conn.execute(select(tables.events.c[column]))
            return set(found.scalars())
    finally:
        await db.close()


def test_a_backup_during_deliveries_restores_every_event_answered_before_it(
    server: ServerProcess, deliveries: Deliveries, store_url: str, tmp_path: Path
) -> None:
    wait_for(lambda: len(deliveries.answered) >= 300, 120, what="300 deliveries answered 202")
    started = time.monotonic()
    backup(server, tmp_path / "store.backup")
    finished = time.monotonic()
    count = len(deliveries.answered)
    wait_for(lambda: len(deliveries.answered) >= count + 50, 60, what="deliveries going on")
    deliveries.stop()
    ats = [a for a, _ in deliveries.answered]
    print(
        "RATE",
        len(ats) / (ats[-1] - ats[0]),
        "during",
        sum(started <= a <= finished for a in ats),
        "backup_s",
        finished - started,
        "before",
        sum(a < started for a in ats),
    )
    assert deliveries.refused == []

    code, out, err = restore(store_url, tmp_path / "store.backup")
    assert code == 0, err
    assert "restored" in out
    restored = _event_ids_now(store_url, "delivery_id")
    before = {event for at, event in deliveries.answered if at < started}
    assert before and before <= restored
    after = {event for at, event in deliveries.answered if at > finished}
    assert not after & restored  # answered after the snapshot: not in it
    assert held(store_url)["api_tokens"] >= 1  # the rest of the store came along


def _event_ids_now(url: str, column: str = "id") -> set[str]:
    """The ids (or `column`) of every event stored at `url`."""
    return asyncio.run(_event_ids(url, column))


def test_restore_into_a_store_with_rows_refuses_and_changes_nothing(
    server: ServerProcess, source: str, store_url: str, tmp_path: Path
) -> None:
    backup(server, tmp_path / "store.backup")
    assert restore(store_url, tmp_path / "store.backup")[0] == 0
    rows = held(store_url)
    events = _event_ids_now(store_url)

    code, _out, err = restore(store_url, tmp_path / "store.backup")
    err = " ".join(err.split())
    assert code == 6, err
    assert "the store is not empty" in err and "nothing was changed" in err
    assert held(store_url) == rows and _event_ids_now(store_url) == events


def _damaged(path: Path, change: str) -> Path:
    data = path.read_bytes()
    damaged = path.with_name(f"{change}.backup")
    if change == "flipped":  # a byte in the middle of the compressed stream
        middle = len(data) // 2
        damaged.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    elif change == "truncated":
        damaged.write_bytes(data[: len(data) * 2 // 3])
    else:  # "edited": a row of events changed, the file compressed again
        lines = gzip.decompress(data).split(b"\n")
        at = lines.index(next(ln for ln in lines if ln.startswith(b'{"table":"events"'))) + 1
        lines[at] = lines[at].replace(b"nobody/x", b"nobody/y")
        damaged.write_bytes(gzip.compress(b"\n".join(lines)))
    return damaged


@pytest.mark.parametrize("change", ["flipped", "truncated", "edited"])
def test_a_damaged_backup_is_refused_naming_where_and_changes_nothing(
    server: ServerProcess, source: str, store_url: str, tmp_path: Path, change: str
) -> None:
    sent = deliver_one(server, source)
    assert sent.status_code == 202, sent.text
    backup(server, tmp_path / "store.backup")
    damaged = _damaged(tmp_path / "store.backup", change)

    code, _out, err = restore(store_url, damaged)
    err = " ".join(err.split())
    assert code == 4, err
    assert re.search(rf"{re.escape(str(damaged))}: broken (at|after) line \d+", err), err
    if change == "edited":
        assert "(table events)" in err and "checksum" in err
    assert not any(held(store_url).values())  # nothing written


def test_a_server_started_on_a_restored_store_serves_it_and_writes_after_it(
    server: ServerProcess, source: str, store_url: str, tmp_path: Path
) -> None:
    """The old admin key works, Secrets decrypt with the old key file (kept apart from
    the backup, copied here), and new rows get ids after the restored ones (on
    Postgres the sequences were moved past them)."""
    with server.client() as http:
        before = http.get("/api/v1/events", params={"source": source, "limit": 5}).json()
    backup(server, tmp_path / "store.backup")
    assert restore(store_url, tmp_path / "store.backup")[0] == 0
    home = tmp_path / "restored"
    home.mkdir()
    shutil.copy(server.home / "secret.key", home / "secret.key")
    (home / "context.json").write_text((server.home / "context.json").read_text())
    restored = ServerProcess(home=home, database_url=store_url)
    restored.start()
    try:
        with restored.client() as http:
            again = http.get("/api/v1/events", params={"source": source, "limit": 5}).json()
            assert [e["id"] for e in again["items"]] == [e["id"] for e in before["items"]]
        # The signing Secret decrypts: a signed delivery is checked and answered.
        assert deliver_one(restored, source).status_code == 202
        with restored.client() as http:
            written = http.post(
                "/api/v1/apply",
                json={
                    "documents": [
                        {
                            "apiVersion": API,
                            "kind": "Secret",
                            "metadata": {"name": f"after-{uuid.uuid4().hex[:6]}"},
                            "spec": {"data": {"k": "v"}},
                        }
                    ]
                },
            )
            assert written.status_code == 200, written.text
    finally:
        restored.stop()


# --- export and import -------------------------------------------------------------


@pytest.fixture(scope="module")
def declared(server: ServerProcess, source: str) -> str:
    """A few resources of each kind on the module's server, a Secret among them."""
    mark = uuid.uuid4().hex[:6]
    labelled = documents.org(f"org-{mark}")
    labelled["metadata"]["labels"] = {"team": "ops", "tier": "one"}
    labelled["metadata"]["annotations"] = {"note": "exported"}
    apply(
        server,
        labelled,
        documents.secret(f"db-{mark}", {"password": "hunter2 ünï", "user": "app"}),
        documents.stack(f"stack-{mark}", {"name": "web", "command": ["sleep", "100000"]}),
        documents.tenant(f"tenant-{mark}", f"stack-{mark}", org=f"org-{mark}"),
    )
    return mark


def other_server(store_url: str, tmp_path: Path) -> ServerProcess:
    fresh = ServerProcess(home=tmp_path / "other", database_url=store_url)
    fresh.start()
    return fresh


def on(server: ServerProcess, *args: str) -> Outcome:
    return run(*args, env={"ARMILLARY_URL": server.url, "ARMILLARY_TOKEN": server.token})


def files(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.glob("*.yaml"))}


def test_export_import_export_gives_the_same_files(
    server: ServerProcess, declared: str, store_url: str, tmp_path: Path
) -> None:
    code, _out, err = on(server, "export", str(tmp_path / "first"), "--secrets", "--decrypt")
    assert code == 0, err
    first = files(tmp_path / "first")
    assert {"orgs.yaml", "secrets.yaml", "stacks.yaml", "tenants.yaml"} <= set(first)
    assert "hunter2 ünï" in first["secrets.yaml"] and "uid" not in first["tenants.yaml"]

    other = other_server(store_url, tmp_path)
    try:
        code, out, err = on(other, "import", str(tmp_path / "first"))
        assert code == 0, err
        assert f"tenant/tenant-{declared} created" in out
        code, _out, err = on(other, "export", str(tmp_path / "again"), "--secrets", "--decrypt")
        assert code == 0, err
    finally:
        other.stop()
    assert files(tmp_path / "again") == first


def test_secrets_are_left_out_unless_asked_and_sealed_unless_decrypted(
    server: ServerProcess, declared: str, store_url: str, tmp_path: Path
) -> None:
    assert on(server, "export", str(tmp_path / "plain"))[0] == 0
    assert "secrets.yaml" not in files(tmp_path / "plain")

    key = tmp_path / "export.key"
    key.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
    code, _out, err = on(
        server, "export", str(tmp_path / "sealed"), "--secrets", "--key-file", str(key)
    )
    assert code == 0, err
    sealed = files(tmp_path / "sealed")["secrets.yaml"]
    assert "hunter2" not in sealed and "sealed:v1:" in sealed

    other = other_server(store_url, tmp_path)
    try:
        code, _out, err = on(other, "import", str(tmp_path / "sealed"))
        assert code == 4 and f"Secret db-{declared} holds sealed values" in " ".join(err.split())
        code, _out, err = on(other, "import", str(tmp_path / "sealed"), "--key-file", str(key))
        assert code == 0, err
        with other.client() as http:
            revealed = http.get(f"/api/v1/secrets/db-{declared}/reveal").json()
    finally:
        other.stop()
    assert revealed["spec"]["data"] == {"password": "hunter2 ünï", "user": "app"}


def test_only_an_admin_exports_secrets(
    server: ServerProcess, declared: str, tmp_path: Path
) -> None:
    with server.client() as http:
        made = http.post("/api/v1/tokens", json={"role": "viewer", "description": "export"})
    assert made.status_code in (200, 201), made.text
    viewer = {"ARMILLARY_URL": server.url, "ARMILLARY_TOKEN": made.json()["token"]}
    assert run("export", str(tmp_path / "plain"), env=viewer)[0] == 0
    code, _out, err = run("export", str(tmp_path / "s"), "--secrets", "--decrypt", env=viewer)
    assert code == 7, err


def test_a_backup_restores_into_the_other_backend(
    server: ServerProcess,
    source: str,
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The file is the same for both backends: SQLite's restores into Postgres, and
    Postgres's into SQLite, row for row."""
    assert deliver_one(server, source).status_code == 202
    backup(server, tmp_path / "store.backup")
    if backend == "sqlite":
        base = request.getfixturevalue("postgres_server")
        target = postgres.fresh_database(base)
        url = next(target)
    else:
        target = iter(())
        url = f"sqlite:///{tmp_path / 'other.db'}"
    try:
        code, _out, err = restore(url, tmp_path / "store.backup")
        assert code == 0, err
        with gzip.open(tmp_path / "store.backup") as file:
            header = json.loads(file.readline())
        assert held(url) == header["tables"]
        assert _event_ids_now(url) == _event_ids_now(server.store_url)
    finally:
        next(target, None)
