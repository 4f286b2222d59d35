"""Authentication of API requests: `Authorization: Bearer <token>`.

Every route under /api/v1 depends on `principal`; /healthz and /readyz do not.
Roles beyond the bootstrap admin arrive with API keys; until then every valid token
is an admin token.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Request

from armillary.auth import tokens
from armillary.errors import Unauthorized
from armillary.store.database import Database


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def principal(
    request: Request, db: Annotated[Database, Depends(database)]
) -> tokens.Principal:
    header = request.headers.get("authorization")
    if header is None:
        raise Unauthorized("missing 'Authorization: Bearer <token>' header")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    async with db.read() as conn:
        return await tokens.authenticate(conn, value.strip(), now=dt.datetime.now(dt.UTC))


Principal = Annotated[tokens.Principal, Depends(principal)]
Db = Annotated[Database, Depends(database)]
