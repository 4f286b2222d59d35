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

import datetime as dt

from armillary import timestamps
from armillary.resources import meta

MAX_LIMIT = 10_000
MAX_CURSOR = meta.SUBDOMAIN_MAX
CURSOR_PATTERN = meta.SUBDOMAIN_PATTERN

# Lists of rows written at a high rate (events, runs) go newest first, by (time, id):
# the cursor is the last row's time in microseconds since the epoch and its id,
# `<micros>_<id>`. Any value the pattern allows is a valid place to go on from:
# 17 digits stay below the year 5138, and an id is compared as text.
KEYSET_PATTERN = r"^[0-9]{1,17}_[0-9a-f-]{1,36}$"
MAX_KEYSET = 17 + 1 + 36
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def keyset(at: dt.datetime, row_id: str) -> str:
    """The cursor after the row at `at` with id `row_id`."""
    micros = (timestamps.utc(at) - _EPOCH) // dt.timedelta(microseconds=1)
    return f"{max(micros, 0)}_{row_id}"


def after(token: str) -> tuple[dt.datetime, str]:
    """(time, id) of a cursor `keyset` made (or any the pattern allows)."""
    micros, _, row_id = token.partition("_")
    return _EPOCH + dt.timedelta(microseconds=int(micros)), row_id
