"""Schemathesis against the OpenAPI document of a real server, authenticated as admin,
on SQLite and on Postgres, with every check (`--checks all`): generated requests for
every operation (the coverage phase on SQLite; fuzzing and stateful sequences on both)
must get no 5xx, no status code, content type, header or body the document does not
describe, no schema-valid request refused and no schema-violating one accepted.

The server's rate limits are set out of the way (`ServerProcess` does it for every
test); the per-operation settings, and why each is there, are in schemathesis.toml next
to this file. About 1,000 requests on SQLite, 300 on Postgres.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import ServerProcess

pytestmark = pytest.mark.long_running

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_the_openapi_document_tells_the_truth(
    server: ServerProcess, backend: str, tmp_path: Path
) -> None:
    # The coverage phase walks the boundaries of the document, which is the same on
    # both backends, and is two thirds of this test's time: it runs on SQLite. What a
    # store changes (conflicts, constraints, transactions) shows under fuzzing and
    # stateful sequences, which run on both.
    phases = "examples,coverage,fuzzing,stateful" if backend == "sqlite" else "fuzzing,stateful"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{server.url}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {server.token}",
        "--checks",
        "all",
        "--max-examples",
        "5",
        "--seed",
        "20261202",
        "--generation-database",
        "none",
        "--phases",
        phases,
        "--no-color",
    ]
    done = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        check=False,
    )
    summary = done.stdout[-6000:]
    assert done.returncode == 0, summary + done.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary.split("SUMMARY")[-1], summary
