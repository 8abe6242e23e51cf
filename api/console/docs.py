"""/docs and /redoc with Swagger UI and ReDoc served by this server, so both work air-gapped.

The fastapi-offline package ships the assets (swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js,
favicon.png); api/app.py mounts them at ASSETS_URL. A Content-Security-Policy keeps the pages from reaching
out: ReDoc's sidebar would otherwise load its logo from a CDN.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/static"
# Both pages start from an inline script and inject their styles; ReDoc searches in a blob: worker.
DOCS_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url,
        title=request.app.title,
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        oauth2_redirect_url=None,
    )
    page.headers.update(DOCS_HEADERS)
    return page


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_redoc_html(
        openapi_url=root + request.app.openapi_url,
        title=request.app.title,
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )
    page.headers.update(DOCS_HEADERS)
    return page


def static_files() -> StaticFiles:
    return StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static")
