"""UUIDv7 ids: valid version-7 UUIDs (RFC 9562), unique, ordered by time."""

from __future__ import annotations

import time
import uuid

from armillary import ids


def test_ids_are_version_7_rfc_9562_uuids_with_the_time_in_front() -> None:
    before_ms = time.time_ns() // 1_000_000
    made = ids.uuid7()
    after_ms = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before_ms <= made.int >> 80 <= after_ms
    assert uuid.UUID(ids.new_id()).version == 7
    text = ids.new_id()
    assert str(uuid.UUID(text)) == text and uuid.UUID(hex=ids.new_hex()).version == 7


def test_ids_are_unique_and_later_ones_sort_after_earlier_ones() -> None:
    first = [ids.new_id() for _ in range(2000)]
    last_ms = uuid.UUID(first[-1]).int >> 80
    deadline = time.monotonic() + 5
    while time.time_ns() // 1_000_000 <= last_ms and time.monotonic() < deadline:
        pass  # the next millisecond: ids within one are not ordered among themselves
    second = [ids.new_id() for _ in range(2000)]
    assert len(set(first + second)) == 4000
    assert max(first) < min(second)
