"""The CLI's own behaviour: init, finding the server through the context file,
usage errors, an unreachable server, schema output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.cli import run
from tests.support.ports import free_port
from tests.support.servers import ServerProcess


def test_init_scaffolds_files_that_apply_and_never_overwrites(
    server: ServerProcess, tmp_path: Path
) -> None:
    target = tmp_path / "demo"
    code, out, _ = run("init", str(target))
    assert code == 0
    assert (target / "stack.yaml").exists() and (target / "tenants.yaml").exists()
    env = {"ARMILLARY_URL": server.url, "ARMILLARY_TOKEN": server.token}
    code, out, err = run("apply", "-f", str(target), env=env)
    assert code == 0, err
    assert "stack/hello" in out and "tenant/example-support" in out
    before = (target / "stack.yaml").read_text()
    code, _, err = run("init", str(target))
    assert code == 4 and "already exist" in err
    assert (target / "stack.yaml").read_text() == before


def test_context_file_is_found_without_flags_or_env(server: ServerProcess) -> None:
    env = {"ARMILLARY_HOME": str(server.home), "ARMILLARY_URL": None, "ARMILLARY_TOKEN": None}
    code, out, err = run("get", "orgs", "-o", "json", env=env)
    assert code == 0, err
    assert json.loads(out)["kind"] == "List"


def test_flags_win_over_the_context_file(server: ServerProcess) -> None:
    env = {"ARMILLARY_HOME": str(server.home), "ARMILLARY_URL": None, "ARMILLARY_TOKEN": None}
    code, _, err = run("--token", "arm_wrong_token", "get", "orgs", env=env)
    assert code == 7
    assert "unknown token" in err


def test_usage_errors_exit_2() -> None:
    assert run("get")[0] == 2
    assert run("apply")[0] == 2
    assert run("get", "tenants", "-o", "xml")[0] == 2


def test_unknown_kind_exits_4_and_an_unreachable_server_8(tmp_path: Path) -> None:
    code, _, err = run("get", "gizmos")
    assert code == 4 and "unknown kind 'gizmos'" in err
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run("--server", url, "get", "tenants", env={"ARMILLARY_HOME": str(tmp_path)})
    assert code == 8
    assert f"cannot reach the Armillary server at {url}" in err


def test_schema_prints_json_schema() -> None:
    code, out, _ = run("schema", "stack")
    assert code == 0
    schema = json.loads(out)
    assert schema["properties"]["kind"]["const"] == "Stack"
    code, out, _ = run("schema")
    assert {"$ref": "#/$defs/Tenant"} in json.loads(out)["oneOf"]


def test_console_script_runs_as_a_process() -> None:
    """The installed entry point, as a user runs it (python -m armillary is the same)."""
    result = subprocess.run(
        [sys.executable, "-m", "armillary", "--version"],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("armillary ")


def test_delete_reports_each_name_and_stops_at_the_first_failure(server: ServerProcess) -> None:
    env = {"ARMILLARY_URL": server.url, "ARMILLARY_TOKEN": server.token}
    names = [f"d-{os.urandom(4).hex()}" for _ in range(2)]
    for name in names:
        doc = {
            "apiVersion": "armillary.dev/v1",
            "kind": "Org",
            "metadata": {"name": name},
            "spec": {},
        }
        run("apply", "-f", "-", env=env, input=json.dumps(doc))
    code, out, err = run("delete", "org", names[0], "missing-one", names[1], env=env)
    assert code == 5
    assert f"org/{names[0]} deleted" in out
    assert "not found" in err
    assert run("get", "org", names[1], env=env)[0] == 0  # after the failure nothing else went


def test_name_and_selector_together_is_a_usage_error(server: ServerProcess) -> None:
    env = {"ARMILLARY_URL": server.url, "ARMILLARY_TOKEN": server.token}
    assert run("get", "tenant", "x", "-l", "a=b", env=env)[0] == 2
