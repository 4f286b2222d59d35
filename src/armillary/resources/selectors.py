"""Label selectors, in the Kubernetes grammar: parse one string, match labels with it.

    tier=gold            the label is there and equals gold (`==` is the same)
    tier!=gold           the label is absent or has another value
    tier in (gold,silver)       there and one of these
    tier notin (gold,silver)    absent or none of these
    tier                 the label is there, whatever its value
    !tier                the label is absent
    a=b,!c               every requirement holds (AND); the empty selector matches all

The API's list routes (`?selector=`) and the CLI's `-l` parse with `parse` and match
with `matches`, so both accept the same text and select the same things. `PATTERN`
states the same language as one regular expression for the OpenAPI document; the
unit tests hold the two to the same answers. Keys and values are checked as labels
are (`meta.check_label_key`, `check_label_value`). A malformed selector is `Invalid`
at path `selector`, naming the character where it goes wrong and what was expected.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from armillary.errors import Invalid, Issue
from armillary.resources import meta

Operator = Literal["=", "!=", "in", "notin", "exists", "!"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """One condition on one label key. `values` is empty for `exists` and `!`."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present

    def __str__(self) -> str:
        match self.operator:
            case "=" | "!=":
                return f"{self.key}{self.operator}{self.values[0]}"
            case "in" | "notin":
                return f"{self.key} {self.operator} ({','.join(self.values)})"
            case "exists":
                return self.key
            case "!":
                return f"!{self.key}"


Selector = tuple[Requirement, ...]
"""Requirements that must all hold; empty selects everything."""


def matches(selector: Selector, labels: dict[str, str]) -> bool:
    """Whether `labels` satisfy every requirement of `selector`."""
    return all(r.matches(labels) for r in selector)


def text(selector: Selector) -> str:
    """The selector written back; `parse(text(s)) == s`."""
    return ",".join(str(r) for r in selector)


_KEY = (
    r"(?=[^ =!,()]{1,253}(?:[ =!,()]|$))"
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_SET_VALUE = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_VALUE = f"({_SET_VALUE})?"
_SET = rf" +(in|notin) *\( *{_SET_VALUE} *(, *{_SET_VALUE} *)*\)"
_REQUIREMENT = rf" *(! *{_KEY}|{_KEY}( *(=|==|!=) *{_VALUE}|{_SET})?) *"
PATTERN = rf"^( *|{_REQUIREMENT}(,{_REQUIREMENT})*)$"
"""The grammar as one regular expression (ECMA and Python alike), for OpenAPI."""

_WORD = re.compile(r"[^ =!,()]*")
_SPACES = re.compile(r" *")
EXPECTED_AFTER_KEY = "'=', '==', '!=', 'in (…)', 'notin (…)', ',' or the end"


class _Scanner:
    """Reads one selector left to right; `fail` names the position (1-based)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.at = 0

    def fail(self, expected: str, *, at: int | None = None) -> Invalid:
        where = self.at if at is None else at
        found = repr(self.source[where]) if where < len(self.source) else "the end"
        return Invalid(
            [
                Issue(
                    path="selector",
                    message=f"{self.source!r} at character {where + 1}: expected {expected},"
                    f" got {found}",
                )
            ]
        )

    def spaces(self) -> bool:
        end = _SPACES.match(self.source, self.at)
        assert end is not None  # ' *' matches everywhere
        skipped = end.end() > self.at
        self.at = end.end()
        return skipped

    def take(self, token: str) -> bool:
        self.spaces()
        if self.source.startswith(token, self.at):
            self.at += len(token)
            return True
        return False

    def word(self) -> tuple[int, str]:
        self.spaces()
        start = self.at
        found = _WORD.match(self.source, self.at)
        assert found is not None  # '[…]*' matches everywhere
        self.at = found.end()
        return start, found.group()

    def key(self) -> str:
        start, word = self.word()
        if not word:
            raise self.fail("a label key", at=start)
        try:
            return meta.check_label_key(word)
        except ValueError as exc:
            raise self.fail(f"a label key ({exc})", at=start) from None

    def value(self, *, empty_ok: bool) -> str:
        start, word = self.word()
        if not word and not empty_ok:
            raise self.fail("a label value", at=start)
        try:
            return meta.check_label_value(word)
        except ValueError as exc:
            raise self.fail(f"a label value ({exc})", at=start) from None

    def requirement(self) -> Requirement:
        if self.take("!"):
            return Requirement(key=self.key(), operator="!")
        key = self.key()
        spaced = self.spaces()
        equality: tuple[tuple[str, Operator], ...] = (("!=", "!="), ("==", "="), ("=", "="))
        for token, operator in equality:
            if self.take(token):
                return Requirement(key=key, operator=operator, values=(self.value(empty_ok=True),))
        if self.at >= len(self.source) or self.source[self.at] == ",":
            return Requirement(key=key, operator="exists")
        start, word = self.word()
        if not spaced or word not in ("in", "notin"):
            raise self.fail(EXPECTED_AFTER_KEY, at=start)
        if not self.take("("):
            raise self.fail(f"'(' after {word!r}")
        values = [self.value(empty_ok=False)]
        while self.take(","):
            values.append(self.value(empty_ok=False))
        if not self.take(")"):
            raise self.fail("',' or ')'")
        return Requirement(
            key=key, operator="in" if word == "in" else "notin", values=tuple(values)
        )


def parse(source: str | None) -> Selector:
    """`source` as requirements, in order; `Invalid` at the first thing out of place."""
    if source is None:
        return ()
    scanner = _Scanner(source)
    scanner.spaces()
    if scanner.at == len(source):
        return ()
    found = [scanner.requirement()]
    while True:
        scanner.spaces()
        if scanner.at == len(source):
            return tuple(found)
        if not scanner.take(","):
            raise scanner.fail("',' or the end")
        found.append(scanner.requirement())
