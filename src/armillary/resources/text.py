"""What a string users store may hold: text that encodes as UTF-8, without NUL.

A lone surrogate (`"\\ud800"` in JSON, or in a double-quoted YAML string) decodes to
a Python `str` that cannot be encoded: stored, it breaks every later answer that
holds it — the list of its kind, the node's assignments. A NUL cannot reach a
process (argv and env are C strings) and Postgres refuses it in JSON. So both are
refused where data comes in, with the path of the value, before anything is stored.

`problems(value)` walks plain data (dicts — keys included —, lists, strings);
`validate.parse` runs it on every raw document, and `Storable` (the base of every
resource model, and of API request bodies) on every field of every model, so no
model holds such a string however it was built.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Self

from pydantic import BaseModel, model_validator

Loc = tuple[str | int, ...]
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def problem(value: str) -> str | None:
    """Why `value` is not storable text, or None. Never quotes `value` (it may be a
    secret); the offending code point is named by number."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    point = ord(found.group())
    if point == 0:
        return "contains a NUL character (U+0000); expected text without it"
    return (
        f"contains a lone surrogate (U+{point:04X}), which is not text and cannot "
        "be encoded; expected valid Unicode"
    )


def problems(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, str]]:
    """Every string in `value` (dict keys included) that is not storable text, with
    its path. A key's problem is reported at the key's own path."""
    if isinstance(value, str):
        found = problem(value)
        if found is not None:
            yield loc, found
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and (found := problem(key)) is not None:
                yield (*loc, key), f"the key {found}"
                continue
            yield from problems(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from problems(item, (*loc, index))


def sanitized(value: Any) -> Any:
    """`value` with every lone surrogate replaced by U+FFFD, so it can be encoded.
    For data stored before strings were checked: it can then still be read."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {sanitized(k): sanitized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitized(v) for v in value]
    return value


class Storable(BaseModel):
    """A model whose every string, in every field (dict keys included), is storable
    text. Nested models check their own fields."""

    @model_validator(mode="after")
    def _storable_text(self) -> Self:
        for name in type(self).model_fields:
            for loc, message in problems(getattr(self, name), (name,)):
                where = ".".join(str(p).encode("ascii", "backslashreplace").decode() for p in loc)
                raise ValueError(f"{where}: {message}")
        return self
