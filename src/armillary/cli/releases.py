"""`armillary release …`: the release registry — record, list, show, import, export.

`record` reads the commit of the tag `<component>/v<version>` from a git repository
(never the working tree's HEAD) and records it with its artifact. `import` and
`export` move records between the server and a `releases/<component>/v<version>/
release.yaml` tree; export writes each record in one canonical form, so an exported
tree imports and exports again byte for byte.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer

from armillary import wire
from armillary.cli import output
from armillary.cli.console import call, fail, out
from armillary.client import Client
from armillary.errors import Invalid, Issue
from armillary.resources import loader, semver
from armillary.resources.meta import API_VERSION
from armillary.resources.release import Release, release_name

app = typer.Typer(help="The release registry: one record per build of a component.")
RECORD_FILE = "release.yaml"


def _tag_commit(repo: Path, tag: str) -> str:
    """The commit the tag points at, or a clear error."""
    try:
        found = subprocess.run(
            [
                "git",
                "-C",
                str(repo),
                "rev-parse",
                "--verify",
                "--quiet",
                f"refs/tags/{tag}^{{commit}}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        fail(Invalid(f"cannot run git: {exc}"))
    if found.returncode != 0:
        fail(Invalid(f"{repo}: no tag {tag!r}; create it with `git tag {tag}` first"))
    return found.stdout.strip()


def _artifact(command: str | None, image: str | None, cwd: str | None) -> dict[str, Any]:
    if (command is None) == (image is None):
        fail(Invalid("give exactly one of --command (a process artifact) or --image"))
    if command is not None:
        process: dict[str, Any] = {"command": shlex.split(command)}
        if cwd:
            process["cwd"] = cwd
        return {"process": process}
    assert image is not None
    reference, _, digest = image.partition("@")
    registry, _, rest = reference.partition("/")
    repository, _, tag = rest.rpartition(":")
    if not registry or not repository or not tag:
        fail(Invalid(f"--image: expected REGISTRY/REPOSITORY:TAG[@sha256:…], got {image!r}"))
    found: dict[str, Any] = {"registry": registry, "repository": repository, "tag": tag}
    if digest:
        found["digest"] = digest
    return {"image": found}


@app.command()
def record(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument(help="The component this build is of.")],
    version: Annotated[str, typer.Argument(help="Its semantic version, e.g. 1.4.0.")],
    repo: Annotated[Path, typer.Argument(help="The git repository holding the tag.")] = Path("."),
    from_git: Annotated[
        bool, typer.Option("--from-git", help="Read the commit of <component>/v<version>.")
    ] = False,
    commit: Annotated[str | None, typer.Option(help="The commit, without --from-git.")] = None,
    command: Annotated[
        str | None, typer.Option(help="Process artifact: the command, run from the tag.")
    ] = None,
    cwd: Annotated[str | None, typer.Option(help="Its directory inside the checkout.")] = None,
    image: Annotated[
        str | None, typer.Option(help="Container artifact: REGISTRY/REPO:TAG[@DIGEST].")
    ] = None,
    notes: Annotated[str, typer.Option(help="Release notes.")] = "",
) -> None:
    """Record one build: the tag <component>/v<version>, its commit, and its artifact."""
    tag = f"{component}/v{version}"
    if from_git == (commit is not None):
        fail(Invalid("give exactly one of --from-git [REPO] or --commit SHA"))
    spec: dict[str, Any] = {"component": component, "version": version}
    if from_git:
        spec["git"] = {
            "tag": tag,
            "commit": _tag_commit(repo, tag),
            "repository": str(repo.resolve()),
        }
    else:
        spec["git"] = {"tag": tag, "commit": commit}
    spec["artifact"] = _artifact(command, image, cwd)
    if notes:
        spec["notes"] = notes
    document = {
        "apiVersion": API_VERSION,
        "kind": "Release",
        "metadata": {"name": release_name(component, version)},
        "spec": spec,
    }

    async def work(api: Client) -> list[wire.AppliedItem]:
        return await api.apply([document])

    for result in call(ctx, work):
        out.print(f"release/{result.name} {result.result}")


COLUMNS: list[output.Column] = [
    ("COMPONENT", lambda d: d["spec"]["component"]),
    ("VERSION", lambda d: d["spec"]["version"]),
    ("TAG", lambda d: d["spec"]["git"]["tag"]),
    ("COMMIT", lambda d: d["spec"]["git"]["commit"][:12]),
    ("ARTIFACT", lambda d: _describe_artifact(d["spec"]["artifact"])),
]


def _describe_artifact(artifact: dict[str, Any]) -> str:
    if "image" in artifact:
        image = artifact["image"]
        return f"image {image['registry']}/{image['repository']}:{image['tag']}"
    return "process " + shlex.join(artifact["process"]["command"])


WIDE: list[output.Column] = [
    ("NAME", lambda d: d["metadata"]["name"]),
    ("REPOSITORY", lambda d: d["spec"]["git"].get("repository") or "-"),
    ("CREATED", lambda d: d["metadata"].get("createdAt") or "-"),
]


def _listing(found: list[dict[str, Any]], *, one: bool = False) -> output.Listing:
    return output.Listing(
        items=found,
        columns=COLUMNS,
        wide=WIDE,
        name=output.resource_name,
        empty="No releases found.",
        document=one,
    )


@app.command("list")
def list_releases(
    ctx: typer.Context,
    component: Annotated[str | None, typer.Argument(help="Only this component.")] = None,
    out_format: output.Output = output.Format.table,
) -> None:
    """List recorded releases, newest version first per component."""

    async def work(api: Client) -> list[dict[str, Any]]:
        return [wire.dump(r) for r in await api.list_kind("Release")]  # documents, as sent

    found = [d for d in call(ctx, work) if component in (None, d["spec"]["component"])]
    found.sort(key=lambda d: (d["spec"]["component"], _precedence(d["spec"]["version"])))
    output.show(_listing(found), out_format)


def _precedence(version: str) -> semver.Version:
    return semver.parse(version)


@app.command()
def show(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument()],
    version: Annotated[str, typer.Argument()],
    out_format: output.Output = output.Format.yaml,
) -> None:
    """Print one release record: as YAML in its canonical form (the default, as
    `release export` writes it), or in any other `-o` format."""

    async def work(api: Client) -> dict[str, Any]:
        return wire.dump(await api.get("Release", release_name(component, version)))

    document = call(ctx, work)
    if out_format is output.Format.yaml:
        out.print(canonical_yaml(document), markup=False, end="")
        return
    output.show(_listing([document], one=True), out_format)


def canonical_yaml(document: dict[str, Any]) -> str:
    """The one form a record is written in: fields in schema order, no server fields."""
    release = Release.model_validate(
        {**document, "metadata": {"name": document["metadata"]["name"]}, "status": None}
    )
    spec = release.spec.model_dump(mode="json", exclude_none=True)
    if not spec.get("notes"):
        spec.pop("notes", None)
    metadata: dict[str, Any] = {"name": release.metadata.name}
    for key in ("labels", "annotations"):
        if document["metadata"].get(key):
            metadata[key] = dict(sorted(document["metadata"][key].items()))
    return output.to_yaml(
        {"apiVersion": API_VERSION, "kind": "Release", "metadata": metadata, "spec": spec}
    )


@app.command("import")
def import_tree(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="A releases/ tree.")],
) -> None:
    """Record every releases/<component>/v<version>/release.yaml under DIRECTORY."""
    files = sorted(directory.glob(f"*/v*/{RECORD_FILE}"))
    if not files:
        fail(Invalid(f"{directory}: no <component>/v<version>/{RECORD_FILE} files"))
    try:
        loaded = loader.load_paths([str(f) for f in files])
    except Invalid as exc:
        fail(exc)
    problems = [
        Issue(path="spec", message=f"expected {where}, by where the file is", file=item.file)
        for item in loaded
        if (where := _placement(item)) is not None
    ]
    if problems:
        fail(Invalid(problems))

    async def work(api: Client) -> list[wire.AppliedItem]:
        return await api.apply([item.raw for item in loaded])

    for result in call(ctx, work):
        out.print(f"release/{result.name} {result.result}")


def _placement(item: loader.Loaded) -> str | None:
    """What the record's path says it must be, when the record says otherwise."""
    path = Path(item.file)
    component, version = path.parent.parent.name, path.parent.name.removeprefix("v")
    spec = item.raw.get("spec", {})
    if item.raw.get("kind") != "Release":
        return "kind Release"
    if (spec.get("component"), spec.get("version")) != (component, version):
        return f"component {component!r} and version {version!r}"
    return None


@app.command("export")
def export_tree(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Where to write the releases/ tree.")],
) -> None:
    """Write every record to DIRECTORY/<component>/v<version>/release.yaml."""

    async def work(api: Client) -> list[dict[str, Any]]:
        return [wire.dump(r) for r in await api.list_kind("Release")]  # documents, as sent

    for document in call(ctx, work):
        spec = document["spec"]
        target = directory / spec["component"] / f"v{spec['version']}" / RECORD_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(canonical_yaml(document))
        out.print(str(target))


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="release")
