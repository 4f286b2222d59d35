"""The server's and the node daemon's own log with `--log-format json`, from real
processes: every line is one JSON object with time, level, logger and message (uvicorn's
lines included); a line logged while serving a request carries its `X-Request-ID`; a
routed webhook event's line carries its tenant, event and run ids; secrets stay out.
A bad format is refused naming the option or variable."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import documents, tls
from tests.support.api import apply
from tests.support.children import Child
from tests.support.nodes import NodeProcess
from tests.support.ports import free_port
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

API = "armillary.dev/v1"
FIXED = {"time", "level", "logger", "message"}
KNOWN = FIXED | {"request_id", "tenant", "event_id", "run_id", "exc_info", "stack_info"}
LEVELS = {"debug", "info", "warning", "error", "critical"}


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server logging JSON at info, so the lines of single requests show."""
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("json-logs"),
        database_url=None,
        extra_args=["--log-format", "json"],
        extra_env={"ARMILLARY_LOG_LEVEL": "info"},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def entries(child: Child) -> list[dict[str, Any]]:
    """Every complete line of the process's output, each checked to be a log object."""
    text = child.log()
    found = []
    for number, line in enumerate(text.split("\n")[:-1], 1):  # the last may be half written
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
        assert isinstance(entry, dict), line
        assert FIXED <= set(entry) <= KNOWN, line
        assert entry["level"] in LEVELS, line
        assert entry["time"].endswith("Z"), line
        assert dt.datetime.fromisoformat(entry["time"]).utcoffset() == dt.timedelta(0), line
        found.append(entry)
    return found


def test_every_line_of_the_server_is_json_uvicorn_included(json_server: ServerProcess) -> None:
    found = entries(json_server)
    assert any(
        e["logger"] == "uvicorn.error" and e["message"] == "Application startup complete."
        for e in found
    )
    # The admin token is in the 0600 context file, never in a shipped log.
    assert any(e["message"].startswith("admin token created") for e in found)
    assert json_server.token not in json_server.log()


def test_a_line_logged_for_a_request_carries_its_request_id(json_server: ServerProcess) -> None:
    name, value = f"logs-{uuid.uuid4().hex[:8]}", f"v4lue-{uuid.uuid4().hex}"
    apply(
        json_server,
        {"apiVersion": API, "kind": "Secret", "metadata": {"name": name}, "spec": {"data": {"K": value}}},
    )  # fmt: skip
    request_id = f"abc-{uuid.uuid4().hex[:8]}"
    with json_server.client() as http:
        revealed = http.get(f"/api/v1/secrets/{name}/reveal", headers={"X-Request-ID": request_id})
    assert revealed.status_code == 200 and revealed.headers["x-request-id"] == request_id

    def reveal_line() -> dict[str, Any] | None:
        return next((e for e in entries(json_server) if e.get("request_id") == request_id), None)

    line = wait_for(reveal_line, what="the reveal's log line")
    assert line["message"].startswith(f"secret {name} revealed to ")
    assert request_id not in line["message"]  # a field of its own, not a text prefix
    assert value not in json_server.log()


def test_a_routed_event_is_logged_with_its_tenant_event_and_run(
    json_server: ServerProcess,
) -> None:
    mark = uuid.uuid4().hex[:6]
    secret, source, tenant, repo = f"hooks-{mark}", f"gh-{mark}", f"t-{mark}", f"acme/{mark}"
    signing = f"signing-{mark}"
    apply(
        json_server,
        {"apiVersion": API, "kind": "Secret", "metadata": {"name": secret}, "spec": {"data": {"signing": signing}}},
        {"apiVersion": API, "kind": "Org", "metadata": {"name": f"o-{mark}"}, "spec": {}},
        {"apiVersion": API, "kind": "Stack", "metadata": {"name": f"s-{mark}"},
         "spec": {"components": [{"name": "agent", "command": ["sleep", "100000"]}]}},
        {"apiVersion": API, "kind": "Tenant", "metadata": {"name": tenant},
         "spec": {"org": f"o-{mark}", "stack": f"s-{mark}", "routing": {"github": [repo]}}},
        documents.webhook_source(source, secret),
    )  # fmt: skip
    body = json.dumps({"ref": "refs/heads/main", "repository": {"full_name": repo}}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256="
        + hmac.new(signing.encode(), body, hashlib.sha256).hexdigest(),
        "X-Request-ID": f"hook-{mark}",
    }
    with httpx.Client(base_url=json_server.url, timeout=30, verify=tls.CONTEXT) as http:
        answer = http.post(f"/webhooks/{source}", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    event, run = answer.json()["event"], answer.json()["run"]

    def event_line() -> dict[str, Any] | None:
        return next((e for e in entries(json_server) if e.get("event_id") == event), None)

    line = wait_for(event_line, what="the event's log line")
    assert {k: line.get(k) for k in ("request_id", "tenant", "event_id", "run_id")} == {
        "request_id": f"hook-{mark}",
        "tenant": tenant,
        "event_id": event,
        "run_id": run,
    }
    assert signing not in json_server.log()

    def attempt_line() -> dict[str, Any] | None:  # the worker's, outside the request
        return next(
            (
                e
                for e in entries(json_server)
                if e["logger"] == "armillary.runs" and e.get("run_id") == run
            ),
            None,
        )

    attempt = wait_for(attempt_line, what="the agent run's first attempt line")
    assert (attempt["tenant"], attempt["event_id"]) == (tenant, event)


def test_a_provisioning_run_is_logged_with_its_tenant_run_and_request(
    json_server: ServerProcess,
) -> None:
    mark = uuid.uuid4().hex[:6]
    tenant, stack = f"p-{mark}", f"never-{mark}"
    apply(
        json_server,
        {"apiVersion": API, "kind": "Stack", "metadata": {"name": stack},
         "spec": {"components": [{"name": "app", "command": ["false"]}]}},
    )  # fmt: skip
    body = {"org": f"o-{mark}", "tenant": tenant, "stack": stack, "timeout_s": 1}
    with json_server.client() as http:
        started = http.post(
            "/api/v1/provision/tenants", json=body, headers={"X-Request-ID": f"prov-{mark}"}
        )
    assert started.status_code in (200, 201, 202), started.text
    run = started.json()["id"]

    def rolled_back() -> dict[str, Any] | None:  # never healthy: it fails and is undone
        return next(
            (
                e
                for e in entries(json_server)
                if e.get("run_id") == run and "rolled-back" in e["message"]
            ),
            None,
        )

    line = wait_for(rolled_back, timeout_s=60, what="the run's rollback line")
    # The run carries the id of the request that started it, for as long as it runs.
    assert (line["level"], line["tenant"], line["request_id"]) == (
        "warning",
        tenant,
        f"prov-{mark}",
    )


def test_every_line_of_a_node_daemon_is_json(json_server: ServerProcess, tmp_path: Path) -> None:
    daemon = NodeProcess(
        server=json_server,
        data_dir=tmp_path / "node",
        name=f"json-{uuid.uuid4().hex[:6]}",
        # --token too: its warning, printed before the daemon runs, is a JSON line too.
        token_by="env",
        extra_args=["--log-format", "json", "--token", json_server.token],
    )
    daemon.start()
    daemon.stop()
    found = entries(daemon)
    assert any(e["logger"].startswith("armillary.node") for e in found)
    assert any(
        e["level"] == "warning" and e["message"].startswith("--token puts the key") for e in found
    )


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["node", "--log-format", "xml"], {}, "--log-format"),
        (["server", "--log-format", "xml"], {}, "--log-format"),
        (["server"], {"ARMILLARY_LOG_FORMAT": "xml"}, "ARMILLARY_LOG_FORMAT"),
    ],
)
def test_an_unknown_format_is_refused_naming_where_it_was_given(
    args: list[str], env: dict[str, str], named: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "armillary", *args],
        # A port of its own, should the server ever start despite the bad format.
        env={
            **_clean_env(),
            "ARMILLARY_HOME": str(tmp_path),
            "ARMILLARY_PORT": str(free_port()),
            **env,
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "text" in done.stderr and "json" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "armillary.db").exists()  # refused before anything started


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
