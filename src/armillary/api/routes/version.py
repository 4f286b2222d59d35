"""`GET /api/v1/version`: which Armillary the server runs, for `armillary version`.

A viewer may read it (it says nothing a viewer could not learn from `doctor`); it is
not public, so an anonymous scan of the port does not learn which version to attack.
"""

from __future__ import annotations

import platform

from fastapi import APIRouter

from armillary import __version__, wire
from armillary.api import openapi
from armillary.api.security import Viewer

router = APIRouter(prefix="/api/v1", tags=["health"])

API_VERSION = "armillary.dev/v1"


@router.get("/version", summary="The server's version", **openapi.answer(wire.Version))
async def version(_who: Viewer) -> dict[str, str]:
    """The server's package version, the resource API version it serves, and its Python."""
    return {
        "version": __version__,
        "apiVersion": API_VERSION,
        "python": platform.python_version(),
    }
