"""`create_app(settings)`: the FastAPI application and its lifespan.

At start the lifespan opens the store (migrating it), creates the admin token if
none exists (printing it once and saving it to the local context file), and records
the server's URL for the local CLI. Routers are mounted under /api/v1; `/api/<rest>`
redirects to `/api/v1/<rest>`.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException

from armillary import __version__
from armillary.api import context, limits, problems
from armillary.api.routes import apply, health, resources
from armillary.auth import tokens
from armillary.config import Settings
from armillary.store.database import Database

log = logging.getLogger("armillary.api")


def create_app(settings: Settings) -> FastAPI:
    """The API server for `settings`; the store opens when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await Database.open(settings.resolved_database_url())
        async with db.write() as conn:
            minted = await tokens.bootstrap_admin(conn, now=dt.datetime.now(dt.UTC))
        path = context.write(
            settings.home, url=settings.public_url(), token=minted.token if minted else None
        )
        if minted is not None:
            # Printed once, on purpose: this is the only time the plain token exists
            # outside the 0600 context file.
            print(
                f"armillary: admin token (shown once; saved to {path}):\n  {minted.token}",
                file=sys.stderr,
                flush=True,
            )
        app.state.db = db
        try:
            yield
        finally:
            await db.close()

    app = FastAPI(
        title="Armillary",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.add_middleware(limits.BodyLimit, max_bytes=settings.max_body_bytes)
    problems.install(app)
    app.include_router(health.router)
    app.include_router(resources.router)
    app.include_router(apply.router)

    @app.api_route(
        "/api/{rest:path}",
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    async def unversioned(rest: str, request: Request) -> RedirectResponse:
        """`/api/<rest>` → `/api/v1/<rest>`: 301 for reads, 308 (method kept) for writes."""
        if rest == "v1" or rest.startswith("v1/"):
            raise HTTPException(404, f"no route {request.url.path}")
        target = f"/api/v1/{rest}"
        if request.url.query:
            target += f"?{request.url.query}"
        status = 301 if request.method in ("GET", "HEAD") else 308
        return RedirectResponse(target, status_code=status)

    return app
