"""`Secret`: named values a tenant's replicas receive as environment variables.

`spec.data` maps environment variable names to values; `spec.tenant`, when set, is
the one Tenant that may use the Secret (left out, any tenant may). Tenants name the
Secrets they use in `Tenant.spec.secrets`.

Invariant kept here: no message about a Secret ever quotes one of its values. The
validator says what is wrong with a value without repeating it, `validate` turns off
pydantic's echo of the input for this kind (`Kind.sensitive`), and everything that
shows a stored Secret — `get`, `describe`, plan diffs — shows `REDACTED` in place of
each value (`masked`). The server never stores the values as written: see
`auth.secrets` for what the store holds instead.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from armillary.resources.meta import Document, Model, Name
from armillary.resources.stack import EnvName

REDACTED = "<redacted>"
"""What every secret value is shown as."""


def _check_value(value: str) -> str:
    # Never include `value` in these messages: they reach terminals, logs and the API.
    if value == REDACTED:
        raise ValueError(
            f"{REDACTED} is the placeholder `get` shows in place of a value; write the value "
            "itself (an admin can print it with `armillary secret reveal NAME`)"
        )
    if "\x00" in value:
        raise ValueError("a value may not contain a NUL character (an environment cannot)")
    return value


SecretValue = Annotated[str, AfterValidator(_check_value)]


class SecretSpec(Model):
    tenant: Name | None = None
    data: Annotated[dict[EnvName, SecretValue], Field(min_length=1)]


class Secret(Document[SecretSpec]):
    kind: Literal["Secret"]


def masked(value: Any) -> Any:
    """`value` with every leaf replaced by `REDACTED`; the shape (the keys) is kept."""
    if isinstance(value, dict):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return REDACTED
