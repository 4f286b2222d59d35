"""Liveness and readiness, unauthenticated, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from armillary import wire
from armillary.api.security import Db

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=wire.Health, response_model_exclude_unset=True)
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=wire.Health,
    response_model_exclude_unset=True,
    responses={503: {"description": "The store does not answer", "model": wire.Health}},
)
async def readyz(db: Db) -> dict[str, str] | JSONResponse:
    """The store answers: the server can do useful work."""
    try:
        await db.ping()
    except Exception as exc:  # any store failure means "not ready", said plainly
        return JSONResponse(
            {"status": "unavailable", "reason": type(exc).__name__}, status_code=503
        )
    return {"status": "ok"}
