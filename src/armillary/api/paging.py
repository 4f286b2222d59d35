"""Pages of a list, Kubernetes-style: `?limit=N` gives at most N items and, when more
may follow, `metadata.continue`, to pass back as `?continue=` for the next page.

Every list answers so (docs/api.md names each one's order and cursor). Resource lists
are in name order, and `continue` is the last name the page read; events and agent
runs go newest first with a keyset cursor on (time, id) (below); the short lists are
paged in memory by a text key unique to each item (`page`). A page starts strictly
after its cursor. So paging is stable under concurrent writes — an item present from
the first page to the last is listed exactly once; one created meanwhile is listed if
its key sorts after the cursor — and every value the OpenAPI document allows is a
valid place to go on from (it need not name an item that still exists). Clients
should treat it as opaque: what it holds may change."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query

from armillary import timestamps
from armillary.resources import meta

T = TypeVar("T")

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
    return f"{int(instant(at))}_{row_id}"


def after(token: str) -> tuple[dt.datetime, str]:
    """(time, id) of a cursor `keyset` made (or any the pattern allows)."""
    micros, _, row_id = token.partition("_")
    return _EPOCH + dt.timedelta(microseconds=int(micros)), row_id


def instant(at: dt.datetime) -> str:
    """`at` as 17 digits of microseconds since the epoch: text that sorts as time does
    (ISO 8601 would not: it leaves out a zero fraction)."""
    micros = (timestamps.utc(at) - _EPOCH) // dt.timedelta(microseconds=1)
    return f"{max(micros, 0):017d}"


# Short lists (nodes, users, keys, provisioning and schedule runs, replicas, rollout
# revisions, schedules) are read whole and paged here, by a text key unique to each
# item, in the list's documented order: the cursor is the last key a page gave, and
# the next page starts strictly after it, compared as text. So any text is a valid
# place to go on from, and the pattern only bars NUL and length.
TEXT_PATTERN = r"^[^\x00]+$"
MAX_TEXT = 512

Limit = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_LIMIT,
        description="At most this many items; `metadata.continue` then says where the "
        "next page starts (give it back as `continue`). Without it, every item",
    ),
]
Continue = Annotated[
    str | None,
    Query(
        alias="continue",
        description="Where to go on: the `metadata.continue` of the previous page",
        max_length=MAX_TEXT,
        pattern=TEXT_PATTERN,
    ),
]
KeysetContinue = Annotated[
    str | None,
    Query(
        alias="continue",
        description="Where to go on: the `metadata.continue` of the previous page",
        max_length=MAX_KEYSET,
        pattern=KEYSET_PATTERN,
    ),
]


def page(
    items: Sequence[T],
    key: Callable[[T], str],
    *,
    limit: int | None,
    token: str | None,
    newest_first: bool = False,
) -> tuple[list[T], dict[str, Any]]:
    """One page of `items`, ordered by `key` (descending when `newest_first`), starting
    strictly after `token`; and the list's `metadata` — `{"continue": …}` when more
    follow, else empty. Without `limit`, every item from the cursor on."""
    ordered = sorted(items, key=key, reverse=newest_first)
    if token is not None:
        ordered = [i for i in ordered if (key(i) < token if newest_first else key(i) > token)]
    if limit is None or len(ordered) <= limit:
        return ordered, {}
    taken = ordered[:limit]
    return taken, {"continue": key(taken[-1])}


def answer(items: list[Any], metadata: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A list's JSON answer: `metadata` only when it says something, then `items`."""
    listed: dict[str, Any] = {"metadata": metadata} if metadata else {}
    return {**listed, **extra, "items": items}
