"""The envelope every resource shares: apiVersion, kind, metadata, spec, status.

`metadata.generation`, `uid`, `createdAt` and `status` are owned by the server: they
are accepted on input (so `get -o yaml` output can be applied again) and ignored,
except `resourceVersion`, which makes the write conditional on it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, field_validator

from armillary.resources import text

API_VERSION = "armillary.dev/v1"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")

NAME_MAX = 63
SUBDOMAIN_MAX = 253
SUBDOMAIN_PATTERN = _DNS_SUBDOMAIN.pattern  # every resource name matches it


def check_name(value: str) -> str:
    """A DNS-1123 label: lower-case letters, digits and '-', at most 63 characters."""
    if len(value) > NAME_MAX or not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"expected a DNS-1123 name (a-z, 0-9 and '-', starting and ending with a letter"
            f" or digit, at most {NAME_MAX} characters), got {value!r}"
        )
    return value


def check_subdomain(value: str) -> str:
    """A DNS-1123 subdomain: DNS labels joined by '.', at most 253 characters."""
    if len(value) > SUBDOMAIN_MAX or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            f"expected a DNS-1123 subdomain (a-z, 0-9, '-' and '.', starting and ending with a"
            f" letter or digit, at most {SUBDOMAIN_MAX} characters), got {value!r}"
        )
    return value


def check_label_key(value: str) -> str:
    if len(value) > 253 or not _LABEL_KEY.fullmatch(value):
        raise ValueError(f"expected a label key like 'team' or 'example.com/team', got {value!r}")
    return value


def check_label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise ValueError(
            f"expected a label value of at most 63 letters, digits, '-', '_' or '.', got {value!r}"
        )
    return value


Name = Annotated[
    str,
    AfterValidator(check_name),
    Field(json_schema_extra={"pattern": _DNS_LABEL.pattern, "maxLength": NAME_MAX}),
]
Subdomain = Annotated[
    str,
    AfterValidator(check_subdomain),
    Field(json_schema_extra={"pattern": _DNS_SUBDOMAIN.pattern, "maxLength": SUBDOMAIN_MAX}),
]
LabelKey = Annotated[str, AfterValidator(check_label_key)]
LabelValue = Annotated[str, AfterValidator(check_label_value)]


class Model(text.Storable):
    """Base of every model users write: unknown fields are errors, values are frozen,
    every string is storable text (`text.Storable`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class ObjectMeta(Model):
    """`metadata`: the name users choose plus fields the server owns.

    Names are DNS-1123 labels: they end up in host names and process names.
    """

    name: Name
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    generation: int | None = None
    uid: str | None = None
    created_at: str | None = Field(default=None, alias="createdAt")

    @field_validator("resource_version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        # `get -o yaml` quotes it, but a hand-written `resourceVersion: 3` means the same.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class DottedObjectMeta(ObjectMeta):
    """`metadata` of kinds whose names may hold dots (a Release is `agent-1.4.0`)."""

    name: Subdomain


SpecT = TypeVar("SpecT", bound=Model)


class Document(Model, Generic[SpecT]):
    """One resource as a user writes it. Subclasses fix `kind` and the spec type."""

    api_version: Literal["armillary.dev/v1"] = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    spec: SpecT
    status: dict[str, Any] | None = None

    def spec_dict(self) -> dict[str, Any]:
        """The spec in its canonical stored form: JSON types, defaults left out.

        Two documents that mean the same thing (one spells out a default, one does
        not) give equal dicts, so comparing them decides whether `generation` moves.
        """
        return self.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
