"""JSON Schema for every kind, so editors can validate stack files as they are typed.

`for_kind("Stack")` is one kind's schema; `combined()` is one schema whose `oneOf`
picks the kind by its `kind` field (what yaml-language-server wants).
"""

from __future__ import annotations

from typing import Any

from armillary.resources import kinds

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def for_kind(name: str) -> dict[str, Any]:
    """The JSON Schema of one kind (a name, plural or short name)."""
    kind = kinds.lookup(name)
    schema = kind.model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": SCHEMA_DIALECT, **schema}


def combined() -> dict[str, Any]:
    """One schema accepting a document of any kind."""
    defs: dict[str, Any] = {}
    one_of = []
    for kind in kinds.KINDS:
        schema = kind.model.model_json_schema(
            by_alias=True, mode="validation", ref_template="#/$defs/{model}"
        )
        defs.update(schema.pop("$defs", {}))
        defs[kind.name] = schema
        one_of.append({"$ref": f"#/$defs/{kind.name}"})
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Armillary resource",
        "oneOf": one_of,
        "$defs": defs,
    }
