"""The dashboard: `/` and its assets under `/ui/`, served by the API server itself.

The dashboard is plain ES modules and CSS shipped in the package
(`armillary/api/dashboard/`): no build step, nothing fetched from a CDN, so it works
on a machine with no way out. The page is public (it holds no data; the data comes
from the API, which the browser calls with the session cookie and the CSRF token);
each asset is looked up by name in the fixed set found at import, never by a path
walked on disk. Their Content-Security-Policy (api/headers.py) allows scripts and
styles from this server only: no inline script, no `eval`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse

from armillary.errors import NotFound

router = APIRouter(include_in_schema=False)

DIRECTORY: Final = Path(__file__).resolve().parent.parent / "dashboard"
TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
ASSETS: Final = {
    path.name: path
    for path in sorted(DIRECTORY.iterdir())
    if path.is_file() and path.suffix in TYPES
}
"""Name → file: every asset the dashboard may load, fixed when the server starts."""
CACHE: Final = "no-cache"  # revalidated each load: an upgrade is seen at once


@router.get("/")
async def page() -> FileResponse:
    """The dashboard's one HTML page; the modules it loads route by the URL's fragment."""
    return FileResponse(
        DIRECTORY / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": CACHE},
    )


@router.get("/ui/{asset}")
async def asset(asset: str) -> FileResponse:
    found = ASSETS.get(asset)
    if found is None:
        raise NotFound(f"/ui/{asset}: no such dashboard asset")
    return FileResponse(found, media_type=TYPES[found.suffix], headers={"Cache-Control": CACHE})
