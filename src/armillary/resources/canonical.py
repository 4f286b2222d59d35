"""The canonical form of a document: what it asks the store to hold, nothing more.

Plan compares these, the store writes these, and two documents that mean the same
thing (one spells out a default, one does not) have equal canonical forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from armillary.resources.meta import Document


@dataclass(frozen=True, slots=True, kw_only=True)
class Canonical:
    kind: str
    name: str
    spec: dict[str, Any]
    labels: dict[str, str]
    annotations: dict[str, str]


def of(resource: Document) -> Canonical:  # type: ignore[type-arg]
    """The canonical form of a validated document."""
    return Canonical(
        kind=resource.kind,
        name=resource.metadata.name,
        spec=resource.spec_dict(),
        labels=dict(resource.metadata.labels),
        annotations=dict(resource.metadata.annotations),
    )
