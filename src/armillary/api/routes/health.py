"""Liveness and readiness, unauthenticated, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from armillary.api.security import Db

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(db: Db) -> dict[str, str] | JSONResponse:
    """The store answers: the server can do useful work."""
    try:
        await db.ping()
    except Exception as exc:  # any store failure means "not ready", said plainly
        return JSONResponse(
            {"status": "unavailable", "reason": type(exc).__name__}, status_code=503
        )
    return {"status": "ok"}
