"""Decisions and the loops that act on them. `plan` is pure; controllers come with
the node runtime."""
