"""`Release`: the record of one build of one component.

It pins a semantic version to a git tag `<component>/v<version>` and commit, and
names the artifact — a container image or a process command run from a checkout
of the tag. It never carries build bytes. Its name is `<component>-<version>`, so a
version is recorded once per component.

Every record is first checked against the published JSON Schema shipped beside this
module (`release.schema.json`, also printed by `armillary schema Release --published`),
so tools that validate records with that file and the server agree; the pydantic
model then gives the typed value.
"""

from __future__ import annotations

import functools
import json
import posixpath
from collections.abc import Iterator
from importlib import resources
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import AfterValidator, Field, model_validator

from armillary.resources import semver
from armillary.resources.meta import Document, DottedObjectMeta, Model, Name
from armillary.resources.stack import Loc


def _check_version(value: str) -> str:
    version = semver.parse(value)
    if value != value.lower():
        raise ValueError(
            f"expected a lower-case version (it is part of the Release's name), got {value!r}"
        )
    if version.build:
        raise ValueError(
            f"expected a version without build metadata ('+{version.build}'): build metadata "
            "does not change precedence, so it cannot tell two releases apart; put it in git.commit"
        )
    return value


Version = Annotated[str, AfterValidator(_check_version)]


class GitRef(Model):
    tag: Annotated[str, Field(min_length=1)]
    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{7,64}$")]
    repository: str | None = None


class ImageArtifact(Model):
    registry: Annotated[str, Field(min_length=1)]
    repository: Annotated[str, Field(min_length=1)]
    tag: Annotated[str, Field(min_length=1)]
    digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")] | None = None


def _check_relative(value: str) -> str:
    normal = posixpath.normpath(value)
    if value.startswith("/") or normal == ".." or normal.startswith("../"):
        raise ValueError(f"expected a path inside the checkout of the tag, got {value!r}")
    return value


class ProcessArtifact(Model):
    """A command run from an immutable checkout of the release's tag; `cwd` is relative
    to the checkout's root."""

    command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    cwd: Annotated[str, AfterValidator(_check_relative)] | None = None


class Artifact(Model):
    image: ImageArtifact | None = None
    process: ProcessArtifact | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Artifact:
        if (self.image is None) == (self.process is None):
            raise ValueError("expected exactly one of image or process")
        return self


class ReleaseSpec(Model):
    component: Name
    version: Version
    git: GitRef
    artifact: Artifact
    notes: str = ""

    def issues(self) -> Iterator[tuple[Loc, str]]:
        tag = f"{self.component}/v{self.version}"
        if self.git.tag != tag:
            yield ("git", "tag"), f"expected the tag {tag!r}, got {self.git.tag!r}"


def release_name(component: str, version: str) -> str:
    """The metadata.name a Release of `component` at `version` must carry."""
    return f"{component}-{version}"


class Release(Document[ReleaseSpec]):
    kind: Literal["Release"]
    metadata: DottedObjectMeta


SCHEMA_FILE = "release.schema.json"


@functools.cache
def published_schema() -> dict[str, Any]:
    """The JSON Schema every Release record must pass, as shipped with the package."""
    text = resources.files("armillary.resources").joinpath(SCHEMA_FILE).read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = published_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def schema_issues(raw: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Each place `raw` breaks the published schema, with the schema path it broke."""
    errors = sorted(_validator().iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        rule = "/".join(str(part) for part in error.absolute_schema_path)
        yield tuple(error.absolute_path), f"{_short(error)} (release.schema.json#/{rule})"


def _short(error: jsonschema.ValidationError) -> str:
    if error.validator == "pattern":
        rule = error.schema if isinstance(error.schema, dict) else {}
        wanted = str(rule.get("description") or f"the pattern {error.validator_value}")
        got = json.dumps(error.instance)[:60]
        return f"expected {wanted[0].lower()}{wanted[1:].rstrip('.')}, got {got}"
    return error.message if len(error.message) <= 200 else error.message[:197] + "..."
