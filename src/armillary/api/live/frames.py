"""The live protocol's pure part: no I/O, no clock.

A client frame is read into a `Request`; a `subscribe` frame's payload into a `Spec`
(what the subscription watches, in the caller's sight), every mistake an `Error`
naming the field (`payload.kinds[0]`). `verdict` decides what one change is to one
subscription: ADDED when the item starts to match (or is new), MODIFIED while it
matches, DELETED when it goes or stops matching (as a Kubernetes watch with a label
selector does; it carries the item as last seen, never what it has become), nothing
otherwise. A tenant's caller matches only its tenant's items.

Frames go out as text built from pieces encoded once: an item's JSON is encoded once
per change whatever the number of subscribers, and only the subscription id differs
between their frames (`data_frame`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal

from armillary.auth.access import Principal
from armillary.errors import Invalid
from armillary.resources import kinds, selectors

CHANNELS = ("resources", "replicas", "nodes", "logs", "events", "runs", "rollouts")
Code = Literal["Invalid", "Forbidden", "Expired", "Unavailable", "SlowConsumer"]

MAX_FRAME_CHARS = 64 * 1024
MAX_SUBSCRIPTIONS = 100
MAX_ID_CHARS = 64
MAX_TAIL = 100_000

CLOSE_PONG = 4000
CLOSE_UNAUTHENTICATED = 4001
CLOSE_SLOW = 4008

ITEM_NAME = {
    "resources": "object",
    "replicas": "replica",
    "nodes": "node",
    "events": "event",
    "runs": "run",
    "rollouts": "rollout",
}
"""The member of a data frame's payload that holds the item, per channel."""

CACHED = frozenset({"resources", "replicas", "nodes"})
"""Channels that send their present state first, and may resume from a position."""

_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Error(Exception):
    """A system `error` frame to send: `code`, `message`, the `field` it is about."""

    def __init__(self, code: Code, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code: Code = code
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Request:
    """A frame from the client."""

    channel: str
    type: str
    id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Logs:
    """What a `logs` subscription follows."""

    tenant: str
    component: str
    replica: str | None
    since_s: float | None
    tail: int | None


@dataclass(frozen=True, slots=True)
class Spec:
    """What one subscription watches: items of `sources` whose document has each of
    `equals` (a path into the document, the value) and whose labels `selector`
    matches; only `tenant`'s items when set (a tenant's caller)."""

    channel: str
    sources: tuple[str, ...] = ()
    equals: tuple[tuple[tuple[str, ...], str], ...] = ()
    selector: selectors.Selector | None = None
    tenant: str | None = None
    resume: str | None = None
    logs: Logs | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One watched thing as it is now: its source (`resources:Tenant`, `replicas`, …),
    key, tenant (None: cluster-wide), document, labels, and the document's JSON."""

    source: str
    key: str
    tenant: str | None
    doc: dict[str, Any]
    labels: dict[str, str]
    text: str


def item(
    source: str, key: str, tenant: str | None, doc: dict[str, Any], labels: dict[str, str] | None
) -> Item:
    return Item(source, key, tenant, doc, labels or {}, dumps(doc))


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def read(text: str | bytes) -> Request:
    """The client frame in `text`, or `Error` Invalid naming what is wrong."""
    if len(text) > MAX_FRAME_CHARS:
        raise Error("Invalid", f"a frame is at most {MAX_FRAME_CHARS} characters")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise Error("Invalid", f"expected a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise Error("Invalid", "expected a JSON object {channel, type, id, payload}")
    unknown = sorted(set(data) - {"channel", "type", "id", "payload"})
    if unknown:
        raise Error(
            "Invalid", "unknown member; expected channel, type, id, payload", field=unknown[0]
        )
    channel, kind, ident = data.get("channel"), data.get("type"), data.get("id")
    payload = data.get("payload")
    if channel != "system" and channel not in CHANNELS:
        raise Error("Invalid", f"expected one of: system, {', '.join(CHANNELS)}", field="channel")
    if not isinstance(kind, str):
        raise Error("Invalid", "expected a string", field="type")
    if ident is not None and not (isinstance(ident, str) and 1 <= len(ident) <= MAX_ID_CHARS):
        raise Error("Invalid", f"expected a string of 1-{MAX_ID_CHARS} characters", field="id")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise Error(
            "Invalid",
            "expected an object",
            field="payload",
        )
    return Request(channel=channel, type=kind, id=ident, payload=payload)


def spec(request: Request, who: Principal) -> Spec:
    """What the `subscribe` frame `request` asks to watch, as `who` may see it."""
    payload = request.payload
    tenant = who.tenant if who.role == "tenant" else None
    channel = request.channel
    if channel == "resources":
        return _resources(payload, tenant)
    if channel == "nodes":
        _only(payload, {"name", "resourceVersion"})
        if tenant is not None:
            raise Error("Forbidden", "nodes are shown to staff only, not to a tenant's token")
        name = _text(payload, "name", pattern=_NAME)
        return Spec(
            channel="nodes",
            sources=("nodes",),
            equals=(((("name",), name),) if name else ()),
            resume=_text(payload, "resourceVersion"),
        )
    if channel == "replicas":
        _only(payload, {"tenant", "component", "resourceVersion"})
        return Spec(
            channel="replicas",
            sources=("replicas",),
            equals=_equals(payload, {"tenant": ("tenant",), "component": ("component",)}, tenant),
            tenant=tenant,
            resume=_text(payload, "resourceVersion"),
        )
    if channel == "events":
        _only(payload, {"tenant", "source"})
        return Spec(
            channel="events",
            sources=("events",),
            equals=_equals(payload, {"tenant": ("tenant",), "source": ("source",)}, tenant),
            tenant=tenant,
        )
    if channel == "runs":
        _only(payload, {"tenant", "kind"})
        which = payload.get("kind")
        if which not in (None, "agent", "provision"):
            raise Error("Invalid", "expected 'agent' or 'provision'", field="payload.kind")
        sources = ("runs:agent", "runs:provision") if which is None else (f"runs:{which}",)
        return Spec(
            channel="runs",
            sources=sources,
            equals=_equals(payload, {"tenant": ("tenant",)}, tenant),
            tenant=tenant,
        )
    if channel == "rollouts":
        _only(payload, {"tenant"})
        return Spec(
            channel="rollouts",
            sources=("rollouts",),
            equals=_equals(payload, {"tenant": ("tenant",)}, tenant),
            tenant=tenant,
        )
    if channel == "logs":
        return Spec(channel="logs", logs=_logs(payload, tenant), tenant=tenant)
    raise Error("Invalid", f"expected one of: {', '.join(CHANNELS)}", field="channel")


def _resources(payload: dict[str, Any], tenant: str | None) -> Spec:
    _only(payload, {"kinds", "name", "selector", "resourceVersion"})
    wanted = payload.get("kinds")
    if not isinstance(wanted, list) or not wanted:
        raise Error("Invalid", 'expected a list of kinds, e.g. ["Tenant"]', field="payload.kinds")
    known = ", ".join(kinds.BY_NAME)
    for i, name in enumerate(wanted):
        if name not in kinds.BY_NAME:
            raise Error("Invalid", f"expected one of: {known}", field=f"payload.kinds[{i}]")
    name = _text(payload, "name")
    text = _text(payload, "selector")
    try:
        chosen = selectors.parse(text) if text else None
    except Invalid as exc:
        message = exc.issues[0].message if exc.issues else str(exc)
        raise Error("Invalid", message, field="payload.selector") from None
    return Spec(
        channel="resources",
        sources=tuple(dict.fromkeys(f"resources:{k}" for k in wanted)),
        equals=(((("metadata", "name"), name),) if name else ()),
        selector=chosen or None,
        tenant=tenant,
        resume=_text(payload, "resourceVersion"),
    )


def _logs(payload: dict[str, Any], tenant: str | None) -> Logs:
    _only(payload, {"tenant", "component", "replica", "since", "tail"})
    owner = _text(payload, "tenant", pattern=_NAME)
    component = _text(payload, "component", pattern=_NAME)
    if owner is None:
        raise Error("Invalid", "expected the tenant whose logs to follow", field="payload.tenant")
    if component is None:
        raise Error("Invalid", "expected a component of the tenant", field="payload.component")
    if tenant is not None and owner != tenant:
        raise Error("Forbidden", "a tenant's token follows only its own tenant's logs")
    tail = payload.get("tail")
    if tail is not None and (
        isinstance(tail, bool) or not isinstance(tail, int) or not 0 <= tail <= MAX_TAIL
    ):
        raise Error("Invalid", f"expected a whole number 0-{MAX_TAIL}", field="payload.tail")
    return Logs(
        tenant=owner,
        component=component,
        replica=_text(payload, "replica"),
        since_s=_since(payload.get("since")),
        tail=tail,
    )


def _since(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return moment.timestamp()
    raise Error(
        "Invalid", "expected an RFC 3339 time or unix seconds (>= 0)", field="payload.since"
    )


def _only(payload: dict[str, Any], allowed: set[str]) -> None:
    for key in payload:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise Error("Invalid", f"unknown filter; expected: {expected}", field=f"payload.{key}")


def _text(payload: dict[str, Any], key: str, *, pattern: str | None = None) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 4096 or "\x00" in value:
        raise Error("Invalid", "expected a non-empty string", field=f"payload.{key}")
    if pattern is not None:
        import re

        if not re.match(pattern, value) or len(value) > 63:
            raise Error("Invalid", "expected a DNS-1123 name", field=f"payload.{key}")
    return value


def _equals(
    payload: dict[str, Any], fields: dict[str, tuple[str, ...]], tenant: str | None
) -> tuple[tuple[tuple[str, ...], str], ...]:
    chosen: list[tuple[tuple[str, ...], str]] = []
    for key, path in fields.items():
        value = _text(payload, key, pattern=_NAME if key in ("tenant", "component") else None)
        if key == "tenant" and tenant is not None and value not in (None, tenant):
            raise Error(
                "Forbidden", "a tenant's token sees only its own tenant", field="payload.tenant"
            )
        if value is not None:
            chosen.append((path, value))
    return tuple(chosen)


def sees(spec: Spec, thing: Item) -> bool:
    """Whether `spec`'s subscription sees `thing` as it is."""
    if spec.tenant is not None and thing.tenant != spec.tenant:
        return False
    for path, value in spec.equals:
        found: Any = thing.doc
        for step in path:
            found = found.get(step) if isinstance(found, dict) else None
        if found != value:
            return False
    return spec.selector is None or selectors.matches(spec.selector, thing.labels)


Type = Literal["ADDED", "MODIFIED", "DELETED"]


def verdict(spec: Spec, old: Item | None, new: Item | None) -> tuple[Type, Item] | None:
    """What the change from `old` to `new` (None: absent) is to `spec`'s subscription."""
    was = old is not None and sees(spec, old)
    now = new is not None and sees(spec, new)
    if now and new is not None:
        return ("MODIFIED" if was else "ADDED"), new
    if was and old is not None:
        # the item as this subscription last saw it: what it is now is not its to see
        # (it may have moved to another tenant)
        return "DELETED", old
    return None


def position(epoch: str, seq: int) -> str:
    """A watch position: opaque to clients, ordered on one server."""
    return f"{epoch}.{seq}"


def parse_position(text: str, epoch: str) -> int | None:
    """The sequence number of `text` if it is a position of this server (`epoch`)."""
    head, _, tail = text.partition(".")
    if head != epoch or not tail.isdigit() or len(tail) > 18:
        return None
    return int(tail)


def payload_text(channel: str, source: str, thing: Item, where: str) -> str:
    """A data frame's payload, as JSON text: the item and the position `where`."""
    extra = ""
    if channel == "runs":
        extra = '"kind":' + ('"agent"' if source == "runs:agent" else '"provision"') + ","
    return (
        "{"
        + extra
        + f'"{ITEM_NAME[channel]}":'
        + thing.text
        + ',"resourceVersion":"'
        + where
        + '"}'
    )


def data_frame(channel: str, kind: str, id_text: str, payload: str) -> str:
    """A frame from pieces already encoded: `id_text` is the id's JSON."""
    return f'{{"channel":"{channel}","type":"{kind}","id":{id_text},"payload":{payload}}}'


def frame(channel: str, kind: str, ident: str | None, payload: dict[str, Any]) -> str:
    return dumps({"channel": channel, "type": kind, "id": ident, "payload": payload})


def error_frame(error: Error, ident: str | None) -> str:
    payload = {"code": error.code, "message": error.message, "field": error.field}
    return frame("system", "error", ident, payload)
