"""Rendered objects → text, byte-stable: keys sorted at every level, objects in the
order `render` gives, YAML documents separated by `---`, JSON as a `v1` `List`."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML


def to_json(objects: Sequence[dict[str, Any]]) -> str:
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_yaml(objects: Sequence[dict[str, Any]]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096  # never fold long strings: a fold is a change a diff would show
    stream = io.StringIO()
    yaml.dump_all([_sorted(obj) for obj in objects], stream)
    return stream.getvalue()


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
