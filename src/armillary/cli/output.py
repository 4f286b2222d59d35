"""Rendering resources for people (`table`, `wide`, `describe`) and machines (`json`,
`yaml`, `name`).

Every command that prints resources takes the one `-o` option defined here (`Output`)
and prints through `show(Listing(...), fmt)`, so `-o` means the same everywhere: an
unknown value is a usage error (exit 2, naming the allowed ones, as Typer reports a
bad choice), `json`/`yaml` print the documents as the API sent them (camelCase keys,
RFC 3339 times), `name` one `kind/name` per line, `wide` the table plus its long
columns. Tables are plain whitespace-aligned columns, like kubectl's, so they never
wrap and stay easy to `grep`/`awk`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import typer
from ruamel.yaml import YAML

from armillary.cli.console import out

Doc = dict[str, Any]
Column = tuple[str, Callable[[Doc], str]]


class Format(StrEnum):
    """The values of `-o`; a Typer choice, so anything else is a usage error."""

    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"
    name = "name"


Output = Annotated[
    Format,
    typer.Option(
        "--output", "-o", help="table, wide (more columns), json, yaml or name (one per line)."
    ),
]
"""The one `-o` option of every command that prints resources."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """What a command prints, in every format: `items` are the API's documents (what
    json and yaml print), `columns` the table, `wide` the columns `-o wide` adds,
    `name` a document's `kind/name` line, `empty` what the table says for none.
    `document` is set when one resource was asked for (json/yaml print it bare);
    `envelope` wraps a list for json/yaml (`get` prints a kubectl `List`)."""

    items: Sequence[Doc]
    columns: Sequence[Column]
    name: Callable[[Doc], str]
    wide: Sequence[Column] = ()
    empty: str = "No resources found."
    document: bool = False
    envelope: Callable[[list[Doc]], Any] | None = None


def render(listing: Listing, fmt: Format) -> str:
    """`listing` as `fmt` asks, without a trailing newline."""
    items = list(listing.items)
    if fmt in (Format.json, Format.yaml):
        value: Any = items
        if listing.document and len(items) == 1:
            value = items[0]
        elif listing.envelope is not None:
            value = listing.envelope(items)
        return to_json(value) if fmt is Format.json else to_yaml(value).rstrip("\n")
    if fmt is Format.name:
        return "\n".join(listing.name(d) for d in items)
    if not items:
        return listing.empty
    return align([header(listing, fmt), *(row(listing, fmt, doc) for doc in items)])


def _columns(listing: Listing, fmt: Format) -> list[Column]:
    return [*listing.columns, *(listing.wide if fmt is Format.wide else ())]


def header(listing: Listing, fmt: Format) -> list[str]:
    """The titles of the table `fmt` (table or wide) prints."""
    return [title for title, _ in _columns(listing, fmt)]


def row(listing: Listing, fmt: Format, doc: Doc) -> list[str]:
    """One document's cells in the table `fmt` (table or wide) prints."""
    return [cell(doc) for _, cell in _columns(listing, fmt)]


def show(listing: Listing, fmt: Format) -> None:
    """Print `listing` as `fmt` asks (nothing at all for `name` of an empty list, so
    `xargs` gets no blank line)."""
    text = render(listing, fmt)
    if text or fmt is not Format.name:
        out.print(text, markup=False)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2)


def to_yaml(value: Any) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    out = io.StringIO()
    yaml.dump(value, out)
    return out.getvalue()


def age(created_at: str | None, *, now: dt.datetime) -> str:
    """`2026-11-22T10:00:00Z` → `5m` (the largest whole unit, kubectl-style)."""
    if not created_at:
        return "<unknown>"
    created = dt.datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    seconds = max(0, int((now - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _spec(doc: Doc, *keys: str) -> str:
    value: Any = doc.get("spec", {})
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _replicas(doc: Doc) -> str:
    counts = (doc.get("status") or {}).get("replicas")
    return f"{counts.get('ready', 0)}/{counts.get('desired', 0)}" if counts else "-"


def _state(doc: Doc) -> str:
    """The condition that matters most: Degraded, else Ready, else Progressing."""
    conditions = {c["type"]: c for c in (doc.get("status") or {}).get("conditions", [])}
    if not conditions:
        return "Pending"
    if conditions.get("Degraded", {}).get("status") == "True":
        return f"Degraded:{conditions['Degraded'].get('reason', '')}"
    if conditions.get("Ready", {}).get("status") == "True":
        return "Ready"
    return str(conditions.get("Ready", {}).get("reason") or "Progressing")


COLUMNS: dict[str, list[Column]] = {
    "Org": [("DISPLAY NAME", lambda d: _spec(d, "display_name"))],
    "Stack": [
        ("COMPONENTS", lambda d: ",".join(c["name"] for c in d["spec"].get("components", []))),
        ("GENERATION", lambda d: str(d["metadata"].get("generation", ""))),
    ],
    "Release": [
        ("COMPONENT", lambda d: _spec(d, "component")),
        ("VERSION", lambda d: _spec(d, "version")),
    ],
    "Tenant": [
        ("ORG", lambda d: _spec(d, "org")),
        ("STACK", lambda d: _spec(d, "stack")),
        ("READY", lambda d: _replicas(d)),
        ("STATUS", lambda d: _state(d)),
        ("GENERATION", lambda d: str(d["metadata"].get("generation", ""))),
    ],
    "Schedule": [
        ("TENANT", lambda d: _spec(d, "tenant")),
        ("COMPONENT", lambda d: _spec(d, "component")),
        ("CRON", lambda d: _spec(d, "cron")),
        ("TIME ZONE", lambda d: _spec(d, "time_zone") or "UTC"),
    ],
    "Secret": [
        ("TENANT", lambda d: _spec(d, "tenant") or "<any>"),
        ("KEYS", lambda d: ",".join(sorted(d["spec"].get("data", {})))),
    ],
    "Cluster": [
        ("REACHED BY", lambda d: "in-cluster" if _spec(d, "in_cluster") else "kubeconfig"),
        ("INGRESS", lambda d: _spec(d, "ingress") or "ingress"),
        ("DOMAIN", lambda d: _spec(d, "domain") or "example.com"),
    ],
    "WebhookSource": [
        ("TYPE", lambda d: _spec(d, "type")),
        ("KEY SPACE", lambda d: _spec(d, "routing", "key_space")),
    ],
}

WIDE: list[Column] = [
    ("RESOURCE VERSION", lambda d: str(d["metadata"].get("resourceVersion", ""))),
    (
        "LABELS",
        lambda d: (
            ",".join(f"{k}={v}" for k, v in d["metadata"].get("labels", {}).items()) or "<none>"
        ),
    ),
]


def resource_columns(kind: str, *, now: dt.datetime) -> list[Column]:
    """The table of a resource kind: NAME, the kind's own columns, AGE."""
    columns: list[Column] = [("NAME", lambda d: d["metadata"]["name"])]
    columns += COLUMNS.get(kind, [])
    columns.append(("AGE", lambda d: age(d["metadata"].get("createdAt"), now=now)))
    return columns


def resource_name(doc: Doc) -> str:
    """`tenant/acme`, as kubectl's `-o name` prints a resource."""
    return f"{str(doc['kind']).lower()}/{doc['metadata']['name']}"


def table(kind: str, docs: Sequence[Doc], *, wide: bool, now: dt.datetime) -> str:
    listing = Listing(
        items=docs, columns=resource_columns(kind, now=now), wide=WIDE, name=resource_name
    )
    return render(listing, Format.wide if wide else Format.table)


def align(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def describe(doc: Doc) -> str:
    meta = doc["metadata"]
    labels = ",".join(f"{k}={v}" for k, v in meta.get("labels", {}).items()) or "<none>"
    annotations = ",".join(f"{k}={v}" for k, v in meta.get("annotations", {}).items()) or "<none>"
    head = [
        ("Name:", meta["name"]),
        ("Kind:", doc["kind"]),
        ("Labels:", labels),
        ("Annotations:", annotations),
        ("UID:", meta.get("uid", "")),
        ("Generation:", str(meta.get("generation", ""))),
        ("Resource version:", str(meta.get("resourceVersion", ""))),
        ("Created:", meta.get("createdAt", "")),
    ]
    out = align([[k, v] for k, v in head]) + "\n"
    out += "Spec:\n" + _indent(to_yaml(doc.get("spec") or {}))
    status = doc.get("status") or {}
    out += "Status:\n" + (_indent(to_yaml(status)) if status else "  <none reported yet>\n")
    return out + _unplaced(status)


def _unplaced(status: Doc) -> str:
    """A tenant's replicas no node takes, one line per component, as kubectl's
    describe ends with FailedScheduling: the component, which replicas, and why."""
    lines = []
    for name, entry in (status.get("components") or {}).items():
        if entry.get("unplaced"):
            which = ",".join(str(i) for i in entry.get("unplacedReplicas") or ()) or "-"
            lines.append([name, which, f"Unschedulable: {entry['unplaced']}"])
    if not lines:
        return ""
    return "Could not place:\n" + _indent(align([["COMPONENT", "REPLICAS", "REASON"], *lines]))


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
