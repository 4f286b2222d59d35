"""The registry of kinds users may apply: name, model, plural used in URLs.

Adding a kind means adding its module and one line here; the API routes, the CLI's
`get`/`schema` and the loader all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from armillary.resources.cluster import Cluster
from armillary.resources.meta import Document
from armillary.resources.release import Release
from armillary.resources.schedule import Schedule
from armillary.resources.secret import Secret, masked
from armillary.resources.stack import Stack
from armillary.resources.tenant import Org, Tenant
from armillary.resources.webhook import WebhookSource


@dataclass(frozen=True, slots=True, kw_only=True)
class Kind:
    name: str
    plural: str
    model: type[Document]  # type: ignore[type-arg]
    short: tuple[str, ...] = ()
    sensitive: str | None = None
    """The spec field whose values are never shown (a Secret's `data`), if any."""

    def shown(self, spec: dict[str, Any]) -> dict[str, Any]:
        """`spec` as it may be shown to anyone: the `sensitive` field's values masked."""
        if self.sensitive is None or self.sensitive not in spec:
            return spec
        return {**spec, self.sensitive: masked(spec[self.sensitive])}

    def hides(self, path: str) -> bool:
        """Whether a field path (`spec.data.TOKEN`) lies under the `sensitive` field."""
        if self.sensitive is None:
            return False
        root = f"spec.{self.sensitive}"
        return path == root or path.startswith((f"{root}.", f"{root}["))

    def expand(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A stored (canonical) spec with every default spelled out, for people to read.

        Falls back to the spec as stored if it no longer validates (a newer model)."""
        spec_model = self.model.model_fields["spec"].annotation
        assert isinstance(spec_model, type) and issubclass(spec_model, BaseModel)
        try:
            full = spec_model.model_validate(spec)
        except ValidationError:
            return spec
        return full.model_dump(mode="json", by_alias=True, exclude_none=True)


KINDS: tuple[Kind, ...] = (
    Kind(name="Org", plural="orgs", model=Org),
    Kind(name="Stack", plural="stacks", model=Stack),
    Kind(name="Release", plural="releases", model=Release, short=("rel",)),
    Kind(name="Secret", plural="secrets", model=Secret, sensitive="data"),
    Kind(name="Cluster", plural="clusters", model=Cluster),
    Kind(name="Tenant", plural="tenants", model=Tenant),
    Kind(name="Schedule", plural="schedules", model=Schedule, short=("cronjobs",)),
    Kind(name="WebhookSource", plural="webhooksources", model=WebhookSource, short=("ws",)),
)

BY_NAME = {k.name: k for k in KINDS}
BY_PLURAL = {k.plural: k for k in KINDS}

# Apply order: what others refer to goes first, so a directory applies in one pass.
ORDER = {k.name: i for i, k in enumerate(KINDS)}


def lookup(word: str) -> Kind:
    """Find a kind by its name, plural or short name, in any case (`tenant`, `Tenants`)."""
    lowered = word.lower()
    for kind in KINDS:
        names = {kind.name.lower(), kind.plural, *kind.short}
        if lowered in names:
            return kind
    known = ", ".join(k.name for k in KINDS)
    raise KeyError(f"unknown kind {word!r}; expected one of {known}")
