"""The live socket's decisions (api/live/socket.py): what bounds a client's queue,
how subscribe frames are paced, how log chunks become lines."""

from __future__ import annotations

from armillary.api.live import socket


def test_every_frame_counts_against_the_byte_budget() -> None:
    assert socket.overflow(frames=0, limit=10, chars=100, budget=100) is None
    # uncounted frames (listings, errors, pings) add characters, never frames
    assert "characters" in (socket.overflow(frames=0, limit=10, chars=101, budget=100) or "")
    assert "frames" in (socket.overflow(frames=11, limit=10, chars=1, budget=100) or "")


def test_subscribe_frames_are_paced_after_the_burst() -> None:
    bucket = socket.Bucket(rate=10.0, burst=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == 0.1
    assert bucket.take(0.0) == 0.2
    assert bucket.take(10.0) == 0.0  # refilled, never beyond the burst
    assert [bucket.take(10.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.take(10.0) > 0


def test_a_line_is_cut_at_the_limit_and_nothing_waits_longer() -> None:
    lines, rest = socket.split_lines("", "ab\ncdefghij", 4)
    assert lines == [("ab", False), ("cdef", True), ("ghij", True)]
    assert rest == ""
    lines, rest = socket.split_lines("x", "y\nzz", 4)
    assert (lines, rest) == ([("xy", False)], "zz")
    lines, rest = socket.split_lines("", "0123456789\n", 4)
    assert lines == [("0123", True)]
    assert rest == ""
