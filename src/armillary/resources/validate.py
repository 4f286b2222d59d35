"""Turn one raw document (plain dicts and lists) into a typed resource, or say exactly
what is wrong with it and where.

Every problem becomes an `errors.Issue` with the field path inside the document
(`spec.components[1].replicas`). The loader adds file and line; the API adds the
document's index. Nothing here does I/O.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from armillary.errors import Invalid, Issue, TooLarge
from armillary.resources import kinds, text
from armillary.resources import release as releases
from armillary.resources.meta import API_VERSION, Document
from armillary.resources.release import Release, release_name

MAX_DOCUMENT_BYTES = 1024 * 1024
"""The largest document accepted, measured as compact JSON (what the store keeps)."""

Loc = tuple[str | int, ...]
Locate = Callable[[Loc], int | None]
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(loc: Iterable[str | int]) -> str:
    """`("spec", "components", 1, "env", "A.B")` → `spec.components[1].env["A.B"]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def parse(
    raw: Any, *, document: int | None = None, file: str | None = None, locate: Locate | None = None
) -> Document:  # type: ignore[type-arg]
    """Validate `raw` as a resource document. Raises `Invalid` listing every problem."""

    def issue(loc: Loc, message: str) -> Issue:
        line = locate(loc) if locate is not None else None
        return Issue(
            path=format_path(loc), message=message, file=file, line=line, document=document
        )

    if not isinstance(raw, Mapping):
        raise Invalid([issue((), "expected a mapping with apiVersion, kind, metadata and spec")])
    size = len(json.dumps(raw, separators=(",", ":"), default=str))
    if size > MAX_DOCUMENT_BYTES:
        raise TooLarge(
            [issue((), f"document is {size} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes")]
        )
    unstorable = [issue(loc, message) for loc, message in text.problems(raw)]
    if unstorable:
        raise Invalid(unstorable)
    head = _check_head(raw)
    if head:
        raise Invalid([issue(loc, msg) for loc, msg in head])
    kind = kinds.BY_NAME[raw["kind"]]
    if kind.name == "Release":
        published = [issue(loc, msg) for loc, msg in releases.schema_issues(raw)]
        if published:
            raise Invalid(published)
    try:
        resource = kind.model.model_validate(raw)
    except ValidationError as exc:
        # A kind with secret values (Secret) gets messages that never quote the input.
        problems = _pydantic_issues(exc, raw, model=kind.model, echo=kind.sensitive is None)
        raise Invalid([issue(loc, msg) for loc, msg in problems]) from None
    rules = [issue(loc, msg) for loc, msg in semantic_issues(resource)]
    if rules:
        raise Invalid(rules)
    return resource


def _check_head(raw: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    api_version = raw.get("apiVersion")
    if api_version != API_VERSION:
        got = "nothing" if api_version is None else repr(api_version)
        problems.append((("apiVersion",), f"expected {API_VERSION!r}, got {got}"))
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in kinds.BY_NAME:  # `{}` is not hashable
        known = ", ".join(k.name for k in kinds.KINDS)
        got = "nothing" if kind is None else repr(kind)
        problems.append((("kind",), f"unknown kind {got}; expected one of {known}"))
    return problems


def semantic_issues(resource: Document) -> Iterable[tuple[Loc, str]]:  # type: ignore[type-arg]
    """Rules pydantic's per-field checks cannot express, each at its own path."""
    spec_issues = getattr(resource.spec, "issues", None)
    if spec_issues is not None:
        for loc, message in spec_issues():
            yield ("spec", *loc), message
    if isinstance(resource, Release):
        expected = release_name(resource.spec.component, resource.spec.version)
        if resource.metadata.name != expected:
            yield (
                ("metadata", "name"),
                f"expected {expected!r} (a Release is named <component>-<version>), "
                f"got {resource.metadata.name!r}",
            )


def _pydantic_issues(
    exc: ValidationError, raw: Any, *, model: type[BaseModel], echo: bool = True
) -> list[tuple[Loc, str]]:
    """One issue per field path; alternatives of a union are merged into one message.
    With `echo` off, no message quotes the value it is about."""
    merged: dict[Loc, list[str]] = {}
    for error in exc.errors(include_url=False):
        loc = _real_loc(tuple(error["loc"]), raw, missing=error["type"] == "missing")
        message = _message(error, echo=echo)
        if error["type"] == "extra_forbidden" and loc:
            message = _unknown_field(model, loc)
        bucket = merged.setdefault(loc, [])
        if message not in bucket:
            bucket.append(message)
    return [(loc, _join_alternatives(msgs)) for loc, msgs in merged.items()]


def _join_alternatives(messages: list[str]) -> str:
    """`a valid number, got true` + `a valid string, got true` → one sentence."""
    suffixes = {m.rpartition(", got ")[2] for m in messages}
    if len(messages) > 1 and len(suffixes) == 1 and all(", got " in m for m in messages):
        heads = [m.rpartition(", got ")[0] for m in messages]
        return f"{' or '.join(heads)}, got {suffixes.pop()}"
    return " or ".join(messages)


def _real_loc(loc: Loc, raw: Any, *, missing: bool) -> Loc:
    """Drop the union-member tags pydantic inserts (`list[str]`, `function-after[...]`)
    by keeping only the steps that exist in the input."""
    out: list[str | int] = []
    node = raw
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        in_mapping = isinstance(node, Mapping) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_mapping or in_list:
            out.append(part)
            node = node[part]
        elif last and missing and isinstance(part, str):
            out.append(part)
    return tuple(out)


def _unknown_field(model: type[BaseModel], loc: Loc) -> str:
    """`unknown field 'replicaz'; expected one of: … (did you mean 'replicas'?)`."""
    name = str(loc[-1])
    allowed = _fields_at(model, loc[:-1])
    if not allowed:
        return f"unknown field {name!r}"
    message = f"unknown field {name!r}; expected one of: {', '.join(allowed)}"
    close = difflib.get_close_matches(name, allowed, n=1)
    return f"{message} (did you mean {close[0]!r}?)" if close else message


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names (as users write them) of the model found at `loc`, if any."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    for member in _members(current):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return [field.alias or name for name, field in member.model_fields.items()]
    return []


def _step(annotation: Any, part: str | int) -> Any:
    for candidate in _members(annotation):
        if (
            isinstance(part, str)
            and isinstance(candidate, type)
            and issubclass(candidate, BaseModel)
        ):
            for name, field in candidate.model_fields.items():
                if part in (name, field.alias):
                    return field.annotation
        origin = typing.get_origin(candidate)
        args = typing.get_args(candidate)
        if isinstance(part, int) and origin is list and args:
            return args[0]
        if isinstance(part, str) and origin is dict and len(args) == 2:
            return args[1]
    return None


def _members(annotation: Any) -> list[Any]:
    """Unwrap Annotated[...] and unions into the types they may hold."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _message(error: Mapping[str, Any], *, echo: bool = True) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if not echo:
        return f"{msg[0].lower()}{msg[1:]}"
    value = error.get("input")
    shown = json.dumps(value, default=str)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{msg[0].lower()}{msg[1:]}, got {shown}"
