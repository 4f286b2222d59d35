"""The interactive API docs page (`/api/v1/docs`) and the Swagger UI assets it loads,
served from the installed `swagger-ui-bundle` package: the page works on a machine
with no way out to the internet, and the browser fetches nothing from a third party.

FastAPI's own docs route points at a CDN, so the app is created with `docs_url=None`
and this router serves the page instead, with every URL on this server. Each asset
has a fixed route (no path parameter, no file system walk): the gate lets exactly
these paths through unauthenticated (`security.PUBLIC`), like the page itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

router = APIRouter(include_in_schema=False)

PAGE: Final = "/api/v1/docs"
OPENAPI: Final = "/api/v1/openapi.json"
OAUTH2_REDIRECT: Final = "/docs/oauth2-redirect"
ASSETS: Final = {
    f"{PAGE}/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    f"{PAGE}/swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    f"{PAGE}/favicon.png": ("favicon-32x32.png", "image/png"),
}
"""URL → (file in the bundle, content type)."""
CACHE: Final = "public, max-age=86400"  # the bundle changes only with an upgrade


@router.get(PAGE)
async def page() -> HTMLResponse:
    """Swagger UI for this server's OpenAPI document, with local assets only."""
    js, css, icon = ASSETS
    return get_swagger_ui_html(
        openapi_url=OPENAPI,
        title="Armillary - Swagger UI",
        swagger_js_url=js,
        swagger_css_url=css,
        swagger_favicon_url=icon,
        oauth2_redirect_url=OAUTH2_REDIRECT,
        # Swagger UI would ask validator.swagger.io for a badge: nothing leaves this page.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(OAUTH2_REDIRECT)
async def oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


def _asset(url: str) -> None:
    name, media_type = ASSETS[url]
    path = Path(str(swagger_ui_path)) / name

    async def serve() -> FileResponse:
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": CACHE})

    serve.__name__ = f"asset_{name.replace('-', '_').replace('.', '_')}"
    router.add_api_route(url, serve, methods=["GET"])


for _url in ASSETS:
    _asset(_url)
