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


def uuid7() -> uuid.UUID:
    """A new UUIDv7."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value &= ~(0xF000 << 64)  # version: the top four bits of the seventh byte
    value |= 0x7000 << 64
    value &= ~(0xC000 << 48)  # variant: the top two bits of the ninth byte
    value |= 0x8000 << 48
    return uuid.UUID(int=value)


def new_id() -> str:
    """A UUIDv7 in its usual text form (36 characters)."""
    return str(uuid7())
