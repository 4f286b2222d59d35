"""Timestamps as Armillary shows them: UTC, ISO 8601, with a `Z`.

SQLite hands datetimes back without a zone; Armillary only ever writes UTC, so a
naive value is read as UTC. Imported by the store and the API alike.
"""

from __future__ import annotations

import datetime as dt


def utc(value: dt.datetime) -> dt.datetime:
    """`value` with its zone set (naive → UTC) and converted to UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def iso(value: dt.datetime) -> str:
    """`2026-11-22T10:00:00.123456Z`."""
    return utc(value).isoformat().replace("+00:00", "Z")


def iso_or_none(value: dt.datetime | None) -> str | None:
    return None if value is None else iso(value)
