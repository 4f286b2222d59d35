"""An apply of 10,000 documents, against a real server on SQLite and Postgres, through
the API and through `armillary apply -f`: refused at once with a limit error naming
the setting and its value (ARMILLARY_MAX_APPLY_DOCUMENTS) — never a timeout or a 500 —
and nothing of it written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Cli
from tests.support.documents import API
from tests.support.servers import ServerProcess

COUNT = 10_000
LIMIT = "one apply takes at most 2000 (ARMILLARY_MAX_APPLY_DOCUMENTS)"


def orgs(prefix: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": API, "kind": "Org", "metadata": {"name": f"{prefix}-{i:05d}"}, "spec": {}}
        for i in range(COUNT)
    ]


def test_ten_thousand_documents_through_the_api_are_refused_naming_the_limit(
    server: ServerProcess,
) -> None:
    with server.client() as http:
        for route in ("/api/v1/apply", "/api/v1/plan"):
            answer = http.post(route, json={"documents": orgs("api")})
            assert answer.status_code == 413, answer.text[:2000]
            assert answer.headers["content-type"] == "application/problem+json"
            (issue,) = answer.json()["errors"]
            assert issue["path"] == "documents"
            assert f"{COUNT} documents; {LIMIT}" in issue["message"]
        assert http.get("/api/v1/orgs/api-00000").status_code == 404  # nothing written


@pytest.mark.only_backend("sqlite")  # refused before the store: the same on both
def test_ten_thousand_documents_from_a_file_are_refused_naming_the_limit(
    server: ServerProcess, cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "orgs.yaml"
    path.write_text(
        "".join(
            f"---\napiVersion: {API}\nkind: Org\nmetadata:\n  name: {o['metadata']['name']}\n"
            "spec: {}\n"
            for o in orgs("file")
        )
    )
    code, out, err = cli("apply", "-f", str(path))
    assert code != 0, out
    assert LIMIT in err, err
    with server.client() as http:
        assert http.get("/api/v1/orgs/file-00000").status_code == 404
