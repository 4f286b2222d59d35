"""Semantic versions (semver.org 2.0.0): parsing and precedence, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

# The regular expression published with the semver 2.0.0 specification.
_SEMVER = re.compile(
    r"^(?P<major>0|[1-9][0-9]*)\.(?P<minor>0|[1-9][0-9]*)\.(?P<patch>0|[1-9][0-9]*)"
    r"(?:-(?P<prerelease>(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    re.ASCII,
)


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    """A parsed semantic version; ordering follows semver precedence."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + self.build
        return text

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # A version without prerelease ranks above any prerelease of it; numeric
        # identifiers rank below alphanumeric ones.
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def parse(text: str) -> Version:
    """Parse `text` as a semantic version, or raise ValueError saying what is expected."""
    match = _SEMVER.fullmatch(text)
    if match is None:
        raise ValueError(
            f"expected a semantic version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] "
            f"such as 1.4.0 (no leading 'v'), got {text!r}"
        )
    pre = match["prerelease"]
    return Version(
        major=int(match["major"]),
        minor=int(match["minor"]),
        patch=int(match["patch"]),
        prerelease=tuple(pre.split(".")) if pre else (),
        build=match["build"] or "",
    )
