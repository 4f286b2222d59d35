"""Guard: test modules share helpers only through tests/support/, never by importing
one another (or a conftest), so each helper has one home and one copy."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_tests_import_shared_helpers_from_tests_support_only() -> None:
    offenders = {
        f"{path.relative_to(TESTS)} imports {name}"
        for path in TESTS.rglob("*.py")
        for name in imported(path)
        if (name.startswith("tests.") and not name.startswith("tests.support"))
        or name.split(".")[-1] == "conftest"
    }
    assert not offenders, sorted(offenders)
