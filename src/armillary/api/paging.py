"""Pages of a list, Kubernetes-style: `?limit=N` gives at most N items and, when more
may follow, `metadata.continue`, to pass back as `?continue=` for the next page.

Lists are in name order, and `continue` is the last name the page read: the next page
starts strictly after it. So paging is stable under concurrent writes — an item present
from the first page to the last is listed exactly once; one created meanwhile is listed
if its name sorts after the cursor — and every value the OpenAPI document allows is a
valid place to go on from (it need not name a resource that still exists). Clients
should treat it as opaque: what it holds may change.
"""

from __future__ import annotations

from armillary.resources import meta

MAX_LIMIT = 10_000
MAX_CURSOR = meta.SUBDOMAIN_MAX
CURSOR_PATTERN = meta.SUBDOMAIN_PATTERN
