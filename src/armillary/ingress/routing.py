"""Which tenant an inbound event belongs to: the routing key, and the tenant listing it.

Called by the webhook endpoint (api/routes/webhooks.py) after the signature matched.
Pure: the body, the source's settings and every tenant's routing table come in as
arguments; nothing is read here.

`key` reads the routing key from the body at the source's `routing.pointer` (an RFC
6901 JSON pointer) or, without one, at the sender's usual place (`DEFAULT_POINTERS`).
`tenant` finds the one tenant whose `spec.routing[key_space]` lists that key;
`Index` is the same answer from a table built once (the endpoint keeps one per
routing table it read, see ingress/catalog.py), so routing costs a dictionary lookup
however many tenants there are.
Invariant: an event goes to a tenant only when exactly one tenant claims its key; a
key two tenants list is `ambiguous` and the event stays unrouted, so no tenant ever
receives another tenant's event because of a configuration mistake.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from armillary.resources import webhook

MAX_KEY_CHARS = 512  # as long as a Tenant's routing key may be

DEFAULT_POINTERS: Mapping[str, tuple[str, ...]] = {
    # Events API bodies carry the channel in `event`; slash commands (form posts) at the top.
    "slack": ("/event/channel", "/channel_id"),
    "github": ("/repository/full_name",),
    "pagerduty": ("/event/data/service/id",),
}
"""Where each sender keeps its routing key when the source names no pointer; tried in order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where an event goes: `tenant` when exactly one tenant lists `key`; `claimants`
    names every tenant that does (more than one: ambiguous, so not routed)."""

    key: str | None
    tenant: str | None = None
    claimants: tuple[str, ...] = field(default=())

    @property
    def state(self) -> str:
        return "routed" if self.tenant is not None else "unrouted"


def document(body: bytes, *, content_type: str | None) -> Mapping[str, Any]:
    """The body as a mapping: a JSON object, or the fields of a form post (first value
    of each). Anything else is an empty mapping: such bodies carry no routing key."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        try:
            fields = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            return {}
        return {name: values[0] for name, values in fields.items()}
    try:
        parsed = orjson.loads(body)
    except ValueError:  # orjson refuses some JSON the stdlib reads (integers past 64 bits)
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            return {}
    return parsed if isinstance(parsed, dict) else {}


def resolve(value: Any, pointer: str) -> Any:
    """The value at RFC 6901 `pointer` in `value`, or None where the path leads nowhere."""
    if pointer == "":
        return value
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, Mapping):
            value = value.get(token)
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            return None
    return value


def key(kind: webhook.SourceType, body: Mapping[str, Any], *, pointer: str | None) -> str | None:
    """The routing key of `body`: a non-empty string (numbers are written as text) of at
    most `MAX_KEY_CHARS`, at `pointer` or at the sender's default places; else None."""
    pointers = (pointer,) if pointer is not None else DEFAULT_POINTERS.get(kind, ())
    for candidate in pointers:
        value = resolve(body, candidate)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and 0 < len(value) <= MAX_KEY_CHARS:
            return value
    return None


def tenant(
    found: str | None, *, key_space: str, tenants: Mapping[str, Mapping[str, Sequence[str]]]
) -> Route:
    """Route key `found` among `tenants` (tenant name → its `spec.routing`)."""
    if found is None:
        return Route(key=None)
    claimants = tuple(
        sorted(name for name, routing in tenants.items() if found in routing.get(key_space, ()))
    )
    only = claimants[0] if len(claimants) == 1 else None
    return Route(key=found, tenant=only, claimants=claimants)


class Index:
    """Every tenant's routing keys, by key space and key: `route` answers as `tenant`
    does for the same table, without looking at every tenant."""

    def __init__(self, tenants: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        claims: dict[str, dict[str, set[str]]] = {}
        for name, routing in tenants.items():
            for space, keys in routing.items():
                for listed in keys:
                    claims.setdefault(space, {}).setdefault(listed, set()).add(name)
        self._claims = {
            space: {listed: tuple(sorted(names)) for listed, names in keys.items()}
            for space, keys in claims.items()
        }

    def route(self, found: str | None, *, key_space: str) -> Route:
        if found is None:
            return Route(key=None)
        claimants = self._claims.get(key_space, {}).get(found, ())
        only = claimants[0] if len(claimants) == 1 else None
        return Route(key=found, tenant=only, claimants=claimants)
