"""Selecting and watching replicas from the CLI, against a real server and a real node
daemon: `-l` label selectors on get, ps, logs and delete (the Kubernetes grammar,
one parser for the CLI and the API); logs across every replica of a component."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import documents
from tests.support.api import apply
from tests.support.cli import Cli, invoke
from tests.support.nodes import NodeProcess
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

EXIT_INVALID = 4
PRINTER = [
    "python3",
    "-u",
    "-c",
    "import os, time\nprint('hello from', os.environ['ARMILLARY_REPLICA'])\n"
    "while True: time.sleep(1)",
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def labelled(name: str, stack: str, labels: dict[str, str]) -> dict[str, Any]:
    tenant = documents.tenant(name, stack)
    tenant["metadata"]["labels"] = labels
    return tenant


def names(cli: Cli, *args: str) -> set[str]:
    code, out, err = cli("get", "tenants", *args, "-o", "json")
    assert code == 0, err
    return {item["metadata"]["name"] for item in json.loads(out)["items"]}


def test_get_selects_with_the_kubernetes_grammar(cli: Cli) -> None:
    stack = unique("sel")
    gold, silver, bare = unique("gold"), unique("silver"), unique("bare")
    mine = {gold, silver, bare}
    apply(
        cli.server,
        documents.stack(stack, documents.agent()),
        labelled(gold, stack, {"tier": "gold", "run": stack}),
        labelled(silver, stack, {"tier": "silver", "run": stack}),
        labelled(bare, stack, {"run": stack}),
    )
    assert names(cli, "-l", f"run={stack},tier!=gold") == {silver, bare}
    assert names(cli, "-l", f"run=={stack}, tier in (gold, silver)") == {gold, silver}
    assert names(cli, "-l", f"run={stack},tier notin (gold)") == {silver, bare}
    assert names(cli, "-l", f"run={stack},tier") == {gold, silver}
    assert names(cli, "-l", f"run={stack},!tier") == {bare}
    assert names(cli, "-l", "tier=gold") & mine == {gold}
    # The API takes the same grammar as the CLI.
    with cli.server.client() as http:
        answer = http.get("/api/v1/tenants", params={"selector": f"run={stack},!tier"})
    assert answer.status_code == 200
    assert [i["metadata"]["name"] for i in answer.json()["items"]] == [bare]


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("tier!gold", "at character 5: expected '=', '==', '!=', 'in (…)'"),
        ("tier in (gold", "at character 14: expected ',' or ')', got the end"),
        ("tier=gold,", "at character 11: expected a label key, got the end"),
    ],
)
def test_a_bad_selector_names_the_place_and_is_invalid_input(
    cli: Cli, selector: str, message: str
) -> None:
    for command in (["get", "tenants"], ["ps"], ["delete", "tenants"]):
        code, _, err = cli(*command, "-l", selector)
        assert code == EXIT_INVALID, (command, err)
        assert message in err
    with cli.server.client() as http:
        answer = http.get("/api/v1/tenants", params={"selector": selector})
    assert answer.status_code == 422
    assert message in answer.text


def test_delete_by_selector_deletes_every_match_and_refuses_an_empty_one(cli: Cli) -> None:
    stack = unique("del")
    doomed, kept = unique("doomed"), unique("kept")
    apply(
        cli.server,
        documents.stack(stack, documents.agent()),
        labelled(doomed + "-a", stack, {"run": stack, "tier": "free"}),
        labelled(doomed + "-b", stack, {"run": stack, "tier": "free"}),
        labelled(kept, stack, {"run": stack, "tier": "gold"}),
    )
    for empty in ("", "  "):
        code, _, err = cli("delete", "tenants", "-l", empty)
        assert code == EXIT_INVALID
        assert "an empty selector would delete every tenant" in err
    assert names(cli, "-l", f"run={stack}") == {doomed + "-a", doomed + "-b", kept}

    code, out, err = cli("delete", "tenants", "-l", f"run={stack},tier!=gold")
    assert code == 0, err
    assert f"tenant/{doomed}-a deleted" in out and f"tenant/{doomed}-b deleted" in out
    assert names(cli, "-l", f"run={stack}") == {kept}
    code, out, _ = cli("delete", "tenants", "-l", f"run={stack},tier!=gold")
    assert code == 0 and "No tenants match" in out


def ps_json(server: ServerProcess, *args: str) -> list[dict[str, Any]]:
    code, out, err = invoke(server, "ps", *args, "-o", "json")
    assert code == 0, err
    found: list[dict[str, Any]] = json.loads(out)
    return found


def running(server: ServerProcess, tenant: str, count: int) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        items = [
            i for i in ps_json(server, tenant) if (i.get("report") or {}).get("state") == "running"
        ]
        return items if len(items) == count else None

    return wait_for(check, timeout_s=60, what=f"{count} replicas of {tenant} running")


def test_ps_selects_replicas_by_their_tenants_labels(node: NodeProcess) -> None:
    server = node.server
    stack = unique("ps")
    gold, silver = unique("gold"), unique("silver")
    printer = {"name": "printer", "command": PRINTER}
    apply(
        server,
        documents.stack(stack, printer),
        labelled(gold, stack, {"tier": "gold", "run": stack}),
        labelled(silver, stack, {"tier": "silver", "run": stack}),
    )
    running(server, gold, 1)
    running(server, silver, 1)
    assert {i["tenant"] for i in ps_json(server, "-l", f"run={stack},tier!=gold")} == {silver}
    code, out, err = invoke(server, "ps", "-l", f"run={stack},tier in (gold)")
    assert code == 0, err
    assert gold in out and silver not in out


STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
CRASHER = [
    "python3",
    "-u",
    "-c",
    "import os, sys\nprint('run', os.getpid())\nsys.exit(1)",
]


def printers(server: ServerProcess) -> tuple[str, str, list[str]]:
    """A tenant (labelled run=<stack>) with two replicas of `printer`; their names."""
    stack, tenant = unique("logs"), unique("t")
    apply(
        server,
        documents.stack(stack, {"name": "printer", "command": PRINTER, "replicas": 2}),
        labelled(tenant, stack, {"run": stack}),
    )
    found = running(server, tenant, 2)
    names = sorted(str(i["name"]) for i in found)
    wait_for(
        lambda: all(f"hello from {n}" in invoke(server, "logs", n)[1] for n in names),
        timeout_s=30,
        what="both replicas printed",
    )
    return stack, tenant, names


def test_logs_of_a_component_are_every_replica_prefixed(node: NodeProcess) -> None:
    server = node.server
    stack, tenant, (first, second) = printers(server)

    code, out, err = invoke(server, "logs", f"{tenant}/printer")
    assert code == 0, err
    assert f"{first} | hello from {first}\n" in out
    assert f"{second} | hello from {second}\n" in out

    code, out, err = invoke(server, "logs", f"{tenant}/printer", "-r", "1")
    assert code == 0, err
    assert out == f"hello from {second}\n"  # one replica named: no prefix

    code, out, err = invoke(server, "logs", first)  # the name ps prints
    assert code == 0, err
    assert out == f"hello from {first}\n"

    code, out, err = invoke(server, "logs", "-l", f"run={stack}", "--no-prefix")
    assert code == 0, err
    assert out == f"hello from {first}\nhello from {second}\n"

    code, out, err = invoke(server, "logs", second, "--timestamps")
    assert code == 0, err
    [line] = out.splitlines()
    assert STAMP.match(line) and line.endswith(f" hello from {second}"), line

    code, _, err = invoke(server, "logs", "nope-nothing-0")
    assert code != 0 and "no replica is named 'nope-nothing-0'" in err


def test_logs_follow_every_replica(node: NodeProcess, tmp_path: Path) -> None:
    server = node.server
    _, tenant, names = printers(server)
    sink = tmp_path / "followed.txt"
    env = {**os.environ, "ARMILLARY_URL": server.url, "ARMILLARY_TOKEN": server.token}
    with sink.open("w") as out:
        follower = subprocess.Popen(
            [sys.executable, "-m", "armillary", "logs", "-f", f"{tenant}/printer"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for(
            lambda: all(f"{n} | hello from {n}" in sink.read_text() for n in names),
            timeout_s=30,
            what=lambda: f"both replicas followed; got {sink.read_text()!r}",
        )
        assert follower.poll() is None  # still following
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_a_restart_leaves_a_marker_and_previous_shows_the_last_run(node: NodeProcess) -> None:
    server = node.server
    stack, tenant = unique("crash"), unique("t")
    crasher = {"name": "crasher", "command": CRASHER, "restart": documents.FAST_RESTART}
    apply(server, documents.stack(stack, crasher), documents.tenant(tenant, stack))

    def restarted_twice() -> str | None:
        code, out, _ = invoke(server, "logs", f"{tenant}/crasher")
        return out if code == 0 and out.count("--- armillary: restarted at ") >= 2 else None

    out = wait_for(restarted_twice, timeout_s=60, what="two restart markers")
    marker = next(line for line in out.splitlines() if "armillary: restarted" in line)
    assert re.fullmatch(
        r".+ \| --- armillary: restarted at \S+Z \(restart 1; exited with code 1.*\) ---", marker
    ), marker

    code, out, err = invoke(server, "logs", f"{tenant}/crasher", "-r", "0", "--previous")
    assert code == 0, err
    [line] = out.splitlines()  # one run's output: one line, no marker
    assert re.fullmatch(r"run \d+", line), out

    # A replica that never restarted has no previous run to show.
    _, _, (first, _) = printers(server)
    code, out, _ = invoke(server, "logs", first, "--previous")
    assert "no previous run is kept" in out


COLUMNS = [
    *("TENANT", "COMPONENT", "REPLICA", "NODE", "PID", "STATE", "HEALTH", "RESTARTS"),
    *("EXIT", "REVISION", "CPU", "MEMORY", "UPTIME", "MESSAGE"),
]


def ps_rows(server: ServerProcess, *args: str) -> list[dict[str, str]]:
    """`ps` as a table, each row by column name (MESSAGE, the last, may hold spaces)."""
    code, out, err = invoke(server, "ps", *args)
    assert code == 0, err
    header, *lines = out.splitlines()
    names = header.split()
    return [dict(zip(names, line.split(None, len(names) - 1), strict=True)) for line in lines]


def test_ps_shows_the_crash_reason_exit_code_and_revision(node: NodeProcess) -> None:
    server = node.server
    stack, tenant = unique("crash"), unique("t")
    crasher = {"name": "crasher", "command": CRASHER, "restart": documents.FAST_RESTART}
    apply(server, documents.stack(stack, crasher), documents.tenant(tenant, stack))

    def crashing() -> dict[str, str] | None:
        for row in ps_rows(server, tenant):
            looping = row["STATE"].startswith(("crashloop", "backoff"))
            if looping and "exited with code 1" in row["MESSAGE"]:
                return row
        return None

    row = wait_for(crashing, timeout_s=60, what="the crash loop's reason in the table")
    assert list(row) == COLUMNS
    assert row["EXIT"] == "1"
    assert re.fullmatch(r"exited with code 1; \d+ in a row; restarting in .+", row["MESSAGE"])
    [item] = ps_json(server, tenant)
    assert row["REVISION"] == item["specHash"][:8]

    # A new spec is a new revision: the two replicas of a rollout's slot differ there.
    apply(server, documents.tenant(tenant, stack, env={"CHANGED": "1"}))
    newer = wait_for(
        lambda: [r for r in ps_rows(server, tenant) if r["REVISION"] != row["REVISION"]],
        timeout_s=60,
        what="the replica of the new revision",
    )
    assert newer[0]["REPLICA"] == row["REPLICA"]

    code, out, _ = invoke(server, "ps", tenant, "-o", "wide")
    assert code == 0
    assert out.splitlines()[0].split() == [*COLUMNS, "PORTS", "ID", "SPEC", "HASH", "CREATED"]
    assert any(i["id"] in out for i in ps_json(server, tenant))


def test_ps_shows_cpu_and_memory_the_node_measured(node: NodeProcess) -> None:
    server = node.server
    _, tenant, _ = printers(server)

    def measured() -> list[dict[str, Any]] | None:
        items = ps_json(server, tenant)
        return items if all(i.get("usage") for i in items) else None

    items = wait_for(measured, timeout_s=60, what="usage of both replicas")
    for item in items:
        assert item["usage"]["memoryMb"] > 1  # a python3 process: several MiB resident
        assert item["usage"]["cpuPercent"] >= 0
        assert item["usage"]["measuredAt"].endswith("Z")
    for row in ps_rows(server, tenant):
        assert re.fullmatch(r"\d+\.\d%", row["CPU"]), row
        assert re.fullmatch(r"\d+Mi", row["MEMORY"]) and row["MEMORY"] != "0Mi", row
