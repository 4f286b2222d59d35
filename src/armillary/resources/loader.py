"""Read resource documents from YAML or JSON files, directories or stdin.

Several documents per file (`---`); a directory reads its `*.yaml`, `*.yml` and
`*.json` files in name order (`recursive=True` descends into sub-directories, never
into hidden ones). Every problem — malformed YAML, a duplicate key, a wrong field —
is reported as `file:line: field.path: what was expected`, all of them at once, and
nothing is returned unless every document is valid.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from armillary import errors
from armillary.errors import Invalid, Issue, TooLarge
from armillary.resources import validate
from armillary.resources.meta import Document

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_NODES = 200_000
"""Bound on the values one document may expand to: YAML aliases can make a small file
describe an enormous tree ("billion laughs"); we stop counting well before that."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    """One valid document, the plain data it was read from, and where it stands."""

    resource: Document  # type: ignore[type-arg]
    raw: dict[str, Any]
    file: str
    line: int


def load_paths(
    paths: list[str], *, recursive: bool = False, stdin: str | None = None
) -> list[Loaded]:
    """Load every document under `paths` (`-` reads `stdin`). Raises `Invalid` on any problem."""
    loaded: list[Loaded] = []
    failures: list[Invalid] = []
    for path in paths:
        for name, text in _read(path, recursive=recursive, stdin=stdin, failures=failures):
            try:
                loaded.extend(load_text(text, file=name))
            except Invalid as exc:
                failures.append(exc)
    if failures:
        raise errors.combine(failures)
    return loaded


def load_text(text: str, *, file: str = "<input>") -> list[Loaded]:
    """Load every document in one YAML/JSON text. Raises `Invalid` on any problem."""
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        documents = list(yaml.load_all(io.StringIO(text)))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        # ruamel quotes both values of a duplicate key; the line is enough, and a value
        # may be a secret.
        problem = (exc.problem or exc.context or "malformed YAML").partition(" with value ")[0]
        message = f"malformed YAML: {problem}"
        if exc.context and exc.problem:
            message = f"malformed YAML: {exc.context}; {problem}"
        raise Invalid([Issue(path="", message=message, file=file, line=line)]) from None
    except YAMLError as exc:
        raise Invalid([Issue(path="", message=f"malformed YAML: {exc}", file=file)]) from None
    loaded: list[Loaded] = []
    failures: list[Invalid] = []
    for index, node in enumerate(documents):
        if node is None:
            continue  # an empty document between two `---` is allowed
        line = _line_of(node, ()) or _start_line(text, index)
        try:
            raw = _plain(node, budget=_Budget())
            locate = functools.partial(_line_of, node) if hasattr(node, "lc") else _always(line)
            resource = validate.parse(raw, file=file, locate=locate)
        except _Expanded as exc:
            failures.append(TooLarge([Issue(path="", message=str(exc), file=file, line=line)]))
            continue
        except Invalid as exc:
            failures.append(exc)
            continue
        loaded.append(Loaded(resource=resource, raw=raw, file=file, line=line))
    if failures:
        raise errors.combine(failures)
    return loaded


def read_mapping(path: Path) -> dict[str, Any]:
    """One YAML/JSON mapping from a file that is not a resource (a request body).
    Raises `Invalid` naming the file and line."""
    failures: list[Invalid] = []
    texts = list(_read_file(path, failures)) if path.exists() else []
    if not path.exists():
        failures.append(Invalid([Issue(path="", message="no such file", file=str(path))]))
    if failures:
        raise errors.combine(failures)
    yaml = YAML(typ="rt", pure=True)
    try:
        data = yaml.load(io.StringIO(texts[0][1]))
    except YAMLError as exc:
        raise Invalid([Issue(path="", message=f"malformed YAML: {exc}", file=str(path))]) from None
    if not isinstance(data, dict):
        raise Invalid([Issue(path="", message="expected a mapping", file=str(path), line=1)])
    plain: dict[str, Any] = _plain(data, budget=_Budget())
    return plain


def _read(
    path: str, *, recursive: bool, stdin: str | None, failures: list[Invalid]
) -> Iterator[tuple[str, str]]:
    if path == "-":
        yield "<stdin>", stdin or ""
        return
    target = Path(path)
    if target.is_dir():
        pattern = "**/*" if recursive else "*"
        files = sorted(
            p
            for p in target.glob(pattern)
            if p.is_file()
            and p.suffix in SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(target).parts)
        )
        if not files:
            failures.append(
                Invalid([Issue(path="", message="no .yaml, .yml or .json files here", file=path)])
            )
        for file in files:
            yield from _read_file(file, failures)
    elif target.exists():
        yield from _read_file(target, failures)
    else:
        failures.append(Invalid([Issue(path="", message="no such file or directory", file=path)]))


def _read_file(file: Path, failures: list[Invalid]) -> Iterator[tuple[str, str]]:
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        message = f"file is {size} bytes; the limit is {MAX_FILE_BYTES} bytes"
        failures.append(TooLarge([Issue(path="", message=message, file=str(file), line=1)]))
        return
    try:
        yield str(file), file.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        failures.append(
            Invalid([Issue(path="", message=f"cannot read as UTF-8 text: {exc}", file=str(file))])
        )


class _Expanded(Exception):
    """The document expands past its budget."""


class _Budget:
    """What one document may still expand to: values and bytes of text."""

    def __init__(self) -> None:
        self.values = MAX_NODES
        self.bytes = validate.MAX_DOCUMENT_BYTES

    def spend(self, *, values: int = 1, text: str = "") -> None:
        self.values -= values
        self.bytes -= len(text)
        if self.values < 0:
            raise _Expanded(f"document expands to more than {MAX_NODES} values")
        if self.bytes < 0:
            raise _Expanded(
                "document expands to more than its size limit; "
                f"the limit is {validate.MAX_DOCUMENT_BYTES} bytes"
            )


def _plain(node: Any, *, budget: _Budget) -> Any:
    """ruamel's round-trip types → plain dict/list/str/int/float/bool/None, stopping as
    soon as the document grows past its budget (aliases can repeat a value many times)."""
    budget.spend()
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            budget.spend(values=0, text=str(key))
            out[str(key)] = _plain(value, budget=budget)
        return out
    if isinstance(node, list):
        return [_plain(v, budget=budget) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, dt.datetime | dt.date):
        return node.isoformat()
    text = str(node)
    budget.spend(values=0, text=text)
    return text


def _always(line: int) -> validate.Locate:
    def locate(_loc: validate.Loc) -> int:
        return line

    return locate


def _start_line(text: str, index: int) -> int:
    """The line a document starts on, for documents (plain scalars) that carry no position.
    Parses again, so it is used only on that rare path."""
    yaml = YAML(typ="rt", pure=True)
    for i, node in enumerate(yaml.compose_all(io.StringIO(text))):
        if i == index and node is not None:
            return int(node.start_mark.line) + 1
    return 1


def _line_of(node: Any, loc: tuple[str | int, ...]) -> int | None:
    """The 1-based line of the value at `loc`, or of the deepest ancestor found."""
    line: int | None = None
    current = node
    for part in loc:
        if isinstance(current, CommentedMap) and part in current:
            with contextlib.suppress(KeyError, TypeError):
                line = current.lc.key(part)[0] + 1
            current = current[part]
        elif isinstance(current, CommentedSeq) and isinstance(part, int) and part < len(current):
            with contextlib.suppress(KeyError, TypeError, IndexError):
                line = current.lc.item(part)[0] + 1
            current = current[part]
        else:
            break
    if line is None and isinstance(current, CommentedMap | CommentedSeq):
        return int(current.lc.line) + 1
    if line is None and loc == () and hasattr(node, "lc"):
        return int(node.lc.line) + 1
    return line


def line_of(file: str, *, kind: str, name: str, loc: tuple[str | int, ...]) -> int | None:
    """The line of the field at `loc` in the document of `kind`/`name` in `file`, for a
    problem found after loading (re-reads the file; meant for error paths only)."""
    try:
        text = Path(file).read_text(encoding="utf-8")
        documents = list(YAML(typ="rt", pure=True).load_all(io.StringIO(text)))
    except (OSError, UnicodeDecodeError, YAMLError):
        return None
    for node in documents:
        metadata = node.get("metadata") if isinstance(node, CommentedMap) else None
        if isinstance(metadata, dict) and node.get("kind") == kind and metadata.get("name") == name:
            return _line_of(node, loc)
    return None
