"""Rendered objects → text, byte-stable: keys sorted at every level, objects in the
order `render` gives, YAML documents separated by `---`, JSON as a `v1` `List`.

The YAML is written here rather than by a YAML library: the objects are plain JSON
data, and a general emitter in pure Python costs about a quarter of a second per
tenant, far more than rendering. A string is written plain only when it cannot be
read back as anything but that string (letters, digits and `_./-`, starting with a
letter, `_` or `/`, and no YAML 1.1 boolean or null word); any other is written as a
JSON string, which is a valid YAML double-quoted scalar (with the few characters
JSON leaves raw and YAML refuses escaped). tests/unit/test_kubernetes_render.py
checks that a YAML parser reads back exactly the objects, on generated data too.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any

import orjson

_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_WORDS = frozenset(
    ["y", "n", "yes", "no", "on", "off", "true", "false", "null"]
)  # YAML 1.1 readers take these, in any case, as booleans or null


def to_json(objects: Sequence[dict[str, Any]]) -> str:
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"


def to_yaml(objects: Sequence[dict[str, Any]]) -> str:
    return "---\n".join("".join(_mapping(obj, 0)) for obj in objects)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return _text(str(value))


@functools.lru_cache(maxsize=16384)
def _text(text: str) -> str:
    """Keys, labels and values repeat across objects and tenants: each is decided once."""
    if _PLAIN.fullmatch(text) and text.lower() not in _WORDS:
        return text
    # Escape what JSON leaves raw but YAML refuses or reads as a line break:
    # DEL, the C1 controls (NEL among them), U+2028/9, the BOM, U+FFFE/F.
    return _UNPRINTABLE.sub(_escape, json.dumps(text, ensure_ascii=False))


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _mapping(value: dict[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for key in sorted(value):
        item = value[key]
        head = f"{pad}{_scalar(key)}:"
        if isinstance(item, dict) and item:
            lines.append(head + "\n")
            lines.extend(_mapping(item, indent + 2))
        elif isinstance(item, list) and item:
            lines.append(head + "\n")
            lines.extend(_sequence(item, indent))  # kubectl's style: items at the key's indent
        else:
            lines.append(f"{head} {_inline(item)}\n")
    return lines


def _sequence(value: list[Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for item in value:
        if isinstance(item, dict) and item:
            inner = _mapping(item, indent + 2)
            lines.append(f"{pad}- {inner[0][indent + 2 :]}")
            lines.extend(inner[1:])
        elif isinstance(item, list) and item:
            inner = _sequence(item, indent + 2)
            lines.append(f"{pad}- {inner[0][indent + 2 :]}")
            lines.extend(inner[1:])
        else:
            lines.append(f"{pad}- {_inline(item)}\n")
    return lines


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)
