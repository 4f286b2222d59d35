"""`Release`: the record of one build of one component.

It pins a semantic version to a git tag `<component>/v<version>` and commit, and
names the artifact — a container image or a process command run from a checkout
of the tag. It never carries build bytes. Its name is `<component>-<version>`, so a
version is recorded once per component.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

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


class ProcessArtifact(Model):
    command: Annotated[list[str], Field(min_length=1)]
    cwd: str | None = None


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
