"""What node daemons report, as the API shows it: camelCase keys, RFC 3339 times.

A node speaks the protocol's field names (`exit_code`, `started_at` in unix time,
`cpu_millicores`; see armillary.protocol) and the store keeps its reports as they
came. Every other field the API answers is camelCase with `…Z` times, so the routes
that hand a report, a capacity or a usage out pass it through here first: a client
(the CLI's `-o json`, a script) then reads one spelling everywhere. Called by the
replica, node and schedule-run routes; keys it does not know are camelCased too, so a
newer node's field comes out in the same style.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic.alias_generators import to_camel

from armillary import timestamps

_UNIX_TIMES = frozenset({"started_at"})
"""Report fields a node sends as unix time (seconds, float)."""


def document(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """A node's report (of a replica, or its capacity or usage) for the API, or None."""
    if report is None:
        return None
    return {to_camel(key): _value(key, value) for key, value in report.items()}


def _value(key: str, value: Any) -> Any:
    if key in _UNIX_TIMES and isinstance(value, int | float):
        return timestamps.iso(dt.datetime.fromtimestamp(value, dt.UTC))
    return value
