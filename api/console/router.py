"""Serves the console's HTML shell; its script and stylesheet are static files (mounted by api/app.py).

The shell carries no data: the page signs in with an API key kept in sessionStorage and calls the v1 API
with it, so the console needs no session, cookie or server-side rendering of its own.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).parent
STATIC_URL = "/console/static"
SHELL = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
# Scripts and styles from this server only (no CDN, nothing inline); images also as blob: URLs (previews
# fetched with the key) and https: (face crops linked from S3).
SHELL_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: https:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/console")
async def console_shell() -> HTMLResponse:
    return HTMLResponse(SHELL, headers=SHELL_HEADERS)


def static_files() -> StaticFiles:
    return StaticFiles(directory=CONSOLE_DIR / "static")
