"""`GET /api/v1/secrets/{name}/reveal`: one Secret with its values in clear, for admins.

Secrets are listed, read, applied and deleted through the routes every kind has
(`resources`, `apply`), which show each value as `<redacted>`; this is the one route
that answers with values. Each reveal is written to the audit log, and the answer
is never cached. `Vaulted` hands the server's vault to the routes that seal Secrets.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from armillary import wire
from armillary.api import openapi
from armillary.api.security import Admin, Db
from armillary.auth import secrets
from armillary.store import audit, repository

router = APIRouter(prefix="/api/v1", tags=["resources"])
log = logging.getLogger("armillary.secrets")


async def vault(request: Request) -> secrets.Vault:
    found: secrets.Vault = request.app.state.vault
    return found


Vaulted = Annotated[secrets.Vault, Depends(vault)]


@router.get(
    "/secrets/{name}/reveal",
    summary="Show a Secret with its values in clear (admin; audited)",
    operation_id="reveal_secrets",
    **openapi.answer(wire.Resource, 404),
)
async def reveal_secret(
    name: str, request: Request, response: Response, db: Db, keys: Vaulted, who: Admin
) -> dict[str, Any]:
    async with db.read() as conn:
        stored = await repository.require(conn, "Secret", name)
        values = await secrets.reveal(conn, keys, name)
    now = dt.datetime.now(dt.UTC)
    async with db.write() as conn:
        await audit.record(
            conn,
            audit.Entry(
                at=now,
                verb="reveal",
                outcome="revealed",
                principal=who.name,
                principal_kind=who.kind,
                role=who.role,
                path=request.url.path,
                kind="Secret",
                name=name,
                status=200,
                source=request.client.host if request.client else None,
                request_id=getattr(request.state, "request_id", None),
            ),
        )
    log.info("secret %s revealed to %s", name, who.name)
    response.headers["Cache-Control"] = "no-store"
    document = stored.document()
    document["spec"] = {**document["spec"], "data": values}
    return document
