"""Query parameters several routes share, validated before any handler runs.

A filter that names a tenant or component must look like one (a DNS label), so
injection attempts in filters are refused with 422 at the edge instead of reaching a
query as harmless-but-accepted strings.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from armillary.resources.meta import NAME_MAX

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

NameFilter = Annotated[str | None, Query(max_length=NAME_MAX, pattern=DNS_LABEL)]
"""An optional `?tenant=` / `?component=` filter: a DNS label or nothing."""
