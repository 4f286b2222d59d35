"""`POST /api/v1/apply` and `POST /api/v1/plan`: a set of documents at once.

Both validate every document first. `plan` reports what would change and writes
nothing; `apply` writes all of it in one transaction or none of it. The documents
come as JSON (`documents`), or as YAML text (`yaml`: what the dashboard's plan page
sends, so a browser needs no YAML parser), read as `armillary apply -f` reads a
file, with errors naming the document's line. YAML is parsed by a pure-Python
parser: its text is capped (`YAML_MAX_CHARS`, well under the request body's cap) and
parsed in a worker thread, so a large paste never holds the event loop.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from armillary import wire
from armillary.api import audit, openapi
from armillary.api.routes.secrets import Vaulted
from armillary.api.security import Db, Developer, Viewer, may_write
from armillary.config import Settings
from armillary.control import apply as applying
from armillary.control import plan
from armillary.errors import Issue, TooLarge
from armillary.resources import loader

router = APIRouter(prefix="/api/v1", tags=["apply"])

YAML_MAX_CHARS = 1024 * 1024


class DocumentSet(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    documents: list[Any] = Field(default_factory=list)
    yaml: str | None = Field(
        default=None,
        max_length=YAML_MAX_CHARS,
        description="YAML text of more documents (`---` between them), added after `documents`; "
        "at most 1 MiB",
    )
    prune: bool = False

    def every(self) -> list[Any]:
        """`documents`, then those of `yaml` (`Invalid` naming the line of a bad one)."""
        if self.yaml is None:
            return self.documents
        return [*self.documents, *(d.raw for d in loader.load_text(self.yaml, file="yaml"))]


def _check_count(documents: list[Any], request: Request) -> None:
    """Refuse a set larger than one transaction should write (413), naming the setting."""
    settings: Settings = request.app.state.settings
    most = settings.max_apply_documents
    if len(documents) > most:
        message = (
            f"{len(documents)} documents; one apply takes at most {most} "
            "(ARMILLARY_MAX_APPLY_DOCUMENTS): split them into several applies"
        )
        raise TooLarge([Issue(path="documents", message=message)])


def _change(change: plan.Change) -> dict[str, Any]:
    fields = []
    for f in change.fields:
        item: dict[str, Any] = {"path": f.path}
        if not f.added:
            item["before"] = f.before
        if not f.removed:
            item["after"] = f.after
        fields.append(item)
    return {"action": change.action, "kind": change.kind, "name": change.name, "fields": fields}


@router.post(
    "/plan",
    summary="Show what applying the documents would change",
    **openapi.answer(wire.Plan, 409),
)
async def plan_documents(
    body: DocumentSet, request: Request, db: Db, keys: Vaulted, who: Viewer
) -> dict[str, Any]:
    documents = await run_in_threadpool(body.every)
    _check_count(documents, request)
    parsed = applying.parse_documents(documents, vault=keys)
    # Only those who may write a Secret may plan one: "unchanged" would confirm a guess.
    may_write(who, [p.desired.kind for p in parsed if p.desired.kind == "Secret"])
    changes = await applying.compute_plan(db, parsed, prune=body.prune)
    return {"changes": [_change(c) for c in changes]}


@router.post(
    "/apply",
    summary="Apply the documents: all of them, or none",
    **openapi.answer(wire.Applied, 409),
)
async def apply_documents(
    body: DocumentSet, request: Request, db: Db, keys: Vaulted, who: Developer
) -> dict[str, Any]:
    documents = await run_in_threadpool(body.every)
    _check_count(documents, request)
    parsed = applying.parse_documents(documents, vault=keys)
    may_write(who, [p.desired.kind for p in parsed])
    now = dt.datetime.now(dt.UTC)
    applied = await applying.apply(db, parsed, prune=body.prune, now=now, vault=keys)
    audit.note_applied(request, applied)
    return {
        "results": [
            {
                "kind": a.stored.kind,
                "name": a.stored.name,
                "result": a.result,
                "generation": a.stored.generation,
                "resourceVersion": str(a.stored.resource_version),
            }
            for a in applied
        ]
    }
