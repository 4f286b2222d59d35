"""`WebhookSource`: one inbound endpoint, `POST /webhooks/<name>`.

It says which sender's signature scheme to verify, which secrets to accept (several
at once, for rotation), where the routing key lives in the payload and which tenant
key space it is matched against, and how fast the source may send.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from armillary.resources.meta import Document, Model, Name
from armillary.resources.stack import Loc

SourceType = Literal[
    "slack", "github", "pagerduty", "incidentio", "stripe", "standard", "generic-hmac"
]


class SecretRef(Model):
    """A key of a Secret resource."""

    name: Name
    key: Annotated[str, Field(min_length=1, max_length=253)] = "value"


class WebhookRouting(Model):
    key_space: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
    pointer: Annotated[str, Field(pattern=r"^(/([^~/]|~[01])*)*$")] | None = None


class RateLimit(Model):
    per_second: Annotated[float, Field(gt=0, le=100000)]
    burst: Annotated[int, Field(ge=1, le=1000000)]


class GenericHmac(Model):
    header: Annotated[str, Field(min_length=1)]
    algorithm: Literal["sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = None


class WebhookSourceSpec(Model):
    type: SourceType
    secrets: Annotated[list[SecretRef], Field(min_length=1)]
    routing: WebhookRouting
    tolerance_s: Annotated[int, Field(ge=1, le=86400)] = 300
    max_body_bytes: Annotated[int, Field(ge=1, le=16 * 1024 * 1024)] = 1024 * 1024
    rate_limit: RateLimit | None = None
    tenant_rate_limit: RateLimit | None = None
    hmac: GenericHmac | None = None

    def issues(self) -> Iterator[tuple[Loc, str]]:
        if self.type == "generic-hmac" and self.hmac is None:
            yield ("hmac",), "type generic-hmac needs hmac: {header, algorithm, encoding}"
        if self.type != "generic-hmac" and self.hmac is not None:
            yield ("hmac",), f"hmac settings apply to type generic-hmac only, not {self.type!r}"


class WebhookSource(Document[WebhookSourceSpec]):
    kind: Literal["WebhookSource"]
