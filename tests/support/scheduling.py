"""How `make test` shares the suite between pytest-xdist's workers.

Most integration modules start one real server per module and store backend (the
module-scoped `server` fixture, parametrized by `backend`), and most of their time is
spent waiting on it and on node daemons, not on the CPU. So a unit of work is a
module on one backend: `test_api.py[sqlite]` and `test_api.py[postgres]` may run on
two workers at once, each with its own server, database and ports (tests/support/
ports.py reserves ports across processes). Modules marked `long_running` are handed
out first, so that none of them is left alone at the end.
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadScopeScheduling

BACKENDS = ("sqlite", "postgres")


def scope_of(nodeid: str) -> str:
    """The module of a test, and its backend when it has one:
    `tests/x.py::test_y[postgres-3]` -> `tests/x.py[postgres]`."""
    module = nodeid.split("::", 1)[0]
    if not nodeid.endswith("]") or "[" not in nodeid:
        return module
    ids = nodeid[nodeid.index("[") + 1 : -1].split("-")
    backend = next((part for part in ids if part in BACKENDS), None)
    return module if backend is None else f"{module}[{backend}]"


def long_running_first(items: list[pytest.Item]) -> None:
    """Stable sort: items of modules marked `long_running` first."""
    items.sort(key=lambda item: item.get_closest_marker("long_running") is None)


class ModuleAndBackendScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """xdist's load-by-scope scheduling with `scope_of` as the scope, in collection
    order (see `long_running_first`) rather than largest scope first."""

    def __init__(self, config: pytest.Config, log: object | None = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)
