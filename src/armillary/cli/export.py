"""`armillary export DIR` and `armillary import DIR`: every resource as YAML, through
the API, to copy a fleet's declarations to another server or keep them in git.

Export writes one file per kind, `DIR/<plural>.yaml`, its documents in name order, each
in the form `apply` takes: apiVersion, kind, name, labels, annotations and spec as
stored (defaults filled in), never status nor what the server owns (uid, generation,
versions, times). So export → import into another server → export gives the same
files. Import reads DIR as `apply -f DIR` does and applies every document, Secrets
first among what refers to them (kinds.ORDER), in batches well under the server's
`ARMILLARY_MAX_APPLY_DOCUMENTS`.

Secrets are left out unless asked for (`--secrets`, which needs an admin token: the
values are read through the reveal route, each reveal audited). Their values are then
written sealed, `sealed:v1:<Fernet token>`, under a key the operator holds
(`--key-file`, made with `armillary init --secret-key`; not the server's key, so an
export can move between servers), or in clear with `--decrypt`. Import opens sealed
values with the same `--key-file` before applying them.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.fernet import Fernet, InvalidToken

from armillary import wire
from armillary.cli import output
from armillary.cli.apply import _load, _locator
from armillary.cli.console import call, fail, out
from armillary.client import Client
from armillary.errors import Invalid, Issue
from armillary.resources import kinds

SEALED = "sealed:v1:"
BATCH_DOCUMENTS = 500  # well under ARMILLARY_MAX_APPLY_DOCUMENTS's default (2000)

KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="A key (`armillary init --secret-key`) that seals Secret values on export "
        "and opens them on import.",
    ),
]


def export(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Where to write <plural>.yaml files.")],
    secrets: Annotated[
        bool, typer.Option("--secrets", help="Include Secrets (admin; each read is audited).")
    ] = False,
    decrypt: Annotated[
        bool, typer.Option("--decrypt", help="Write Secret values in clear, not sealed.")
    ] = False,
    key_file: KeyFile = None,
) -> None:
    """Write every resource as YAML, one file per kind, in the form `apply` takes."""
    if decrypt and not secrets:
        fail(Invalid("--decrypt needs --secrets"))
    sealer = None
    if secrets and not decrypt:
        if key_file is None:
            fail(Invalid("--secrets writes values sealed: give --key-file (or pass --decrypt)"))
        sealer = _fernet(key_file)

    async def work(api: Client) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for kind in kinds.KINDS:
            if kind.name == "Secret" and not secrets:
                continue
            listed = sorted(await api.list_kind(kind.name), key=lambda r: r.metadata.name)
            if kind.name == "Secret":
                listed = [await api.reveal_secret(r.metadata.name) for r in listed]
            if listed:
                found[kind.plural] = [declared(r) for r in listed]
        return found

    found = call(ctx, work)
    directory.mkdir(parents=True, exist_ok=True)
    for plural, documents in found.items():
        if plural == "secrets" and sealer is not None:
            documents = [_sealed(d, sealer) for d in documents]
        text = "---\n".join(output.to_yaml(d) for d in documents)
        (directory / f"{plural}.yaml").write_text(text)
        out.print(f"{plural}: {len(documents)} written to {directory / plural}.yaml")


def declared(resource: wire.Resource) -> dict[str, Any]:
    """A stored resource as a document to apply: what its writer declared."""
    metadata: dict[str, Any] = {"name": resource.metadata.name}
    if resource.metadata.labels:
        metadata["labels"] = dict(sorted(resource.metadata.labels.items()))
    if resource.metadata.annotations:
        metadata["annotations"] = dict(sorted(resource.metadata.annotations.items()))
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": metadata,
        "spec": resource.spec,
    }


def import_(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="A directory `armillary export` wrote.")],
    key_file: KeyFile = None,
) -> None:
    """Apply every document in DIR (sealed Secret values opened with --key-file)."""
    if not directory.is_dir():
        fail(Invalid(f"{directory} is not a directory"))
    loaded = _load([str(directory)], False)
    opener = _fernet(key_file) if key_file is not None else None
    raws: list[dict[str, Any]] = []
    for doc in loaded:
        raw = doc.raw
        if raw.get("kind") == "Secret":
            try:
                raw = _opened(raw, opener)
            except Invalid as exc:
                fail(Invalid([replace(i, file=doc.file, line=doc.line) for i in exc.issues]))
        raws.append(raw)
    order = sorted(range(len(loaded)), key=lambda i: kinds.ORDER.get(str(raws[i]["kind"]), 99))

    async def work(api: Client) -> list[wire.AppliedItem]:
        results: list[wire.AppliedItem] = []
        for start in range(0, len(order), BATCH_DOCUMENTS):
            batch = order[start : start + BATCH_DOCUMENTS]
            try:
                results += await api.apply([raws[i] for i in batch])
            except Invalid as exc:  # `document` counts from the batch's start
                raise Invalid([_shifted(i, start) for i in exc.issues]) from None
        return results

    results = call(ctx, work, where=_locator([loaded[i] for i in order]))
    for result in results:
        out.print(f"{result.kind.lower()}/{result.name} {result.result}")


def _shifted(issue: Issue, by: int) -> Issue:
    return issue if issue.document is None else replace(issue, document=issue.document + by)


def _fernet(key_file: Path) -> Fernet:
    try:
        key = key_file.read_text().strip()
        if len(base64.urlsafe_b64decode(key.encode())) != 32:
            raise ValueError("not 32 bytes")
        return Fernet(key.encode())
    except (OSError, ValueError, binascii.Error) as exc:
        fail(
            Invalid(
                f"--key-file {key_file}: not a key ({exc}); make one with "
                "`armillary init --secret-key`"
            )
        )


def _sealed(document: dict[str, Any], sealer: Fernet) -> dict[str, Any]:
    data: dict[str, str] = document["spec"].get("data", {})
    sealed = {k: SEALED + sealer.encrypt(v.encode()).decode() for k, v in data.items()}
    return {**document, "spec": {**document["spec"], "data": sealed}}


def _opened(document: dict[str, Any], opener: Fernet | None) -> dict[str, Any]:
    data: dict[str, str] = document.get("spec", {}).get("data", {})
    if not any(isinstance(v, str) and v.startswith(SEALED) for v in data.values()):
        return document
    name = document.get("metadata", {}).get("name")
    if opener is None:
        raise Invalid(f"Secret {name} holds sealed values: give the --key-file it was sealed with")
    opened: dict[str, str] = {}
    for key, value in data.items():
        if not value.startswith(SEALED):
            opened[key] = value
            continue
        try:
            opened[key] = opener.decrypt(value.removeprefix(SEALED).encode()).decode()
        except InvalidToken:
            raise Invalid(
                [
                    Issue(
                        path=f"spec.data.{key}",
                        message=f"Secret {name}: does not open with this --key-file",
                    )
                ]
            ) from None
    return {**document, "spec": {**document["spec"], "data": opened}}


def register(root: typer.Typer) -> None:
    root.command(name="export")(export)
    root.command(name="import")(import_)
