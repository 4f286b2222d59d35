"""Identifiers for rows written at a high rate: UUIDv7 (RFC 9562).

The first 48 bits are the Unix time in milliseconds, the rest random (74 bits, with
the version and variant bits set), so ids are unique like UUIDv4 and sort by
creation time. A table whose primary key (or index) is such an id takes each new
row at the end of its B-tree: one page changes per batch, where random ids change
one page per row — and every changed page is written to SQLite's WAL again.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_MASK = ~(0xF000 << 64)  # the version: top four bits of the seventh byte
_VERSION_7 = 0x7000 << 64
_VARIANT_MASK = ~(0xC000 << 48)  # the variant: top two bits of the ninth byte
_VARIANT_RFC = 0x8000 << 48


def _value() -> int:
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return (value & _VERSION_MASK | _VERSION_7) & _VARIANT_MASK | _VARIANT_RFC


def uuid7() -> uuid.UUID:
    """A new UUIDv7."""
    return uuid.UUID(int=_value())


def new_hex() -> str:
    """A UUIDv7 as 32 hex digits."""
    return f"{_value():032x}"


def new_id() -> str:
    """A UUIDv7 in its usual text form (36 characters), without building a UUID."""
    h = f"{_value():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
