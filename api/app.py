"""The FastAPI application: routers, error rendering, body-size guard and the reaper loop."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.compat import validation_error
from api.errors import ServiceError
from api.routers import acedata, akool, batches, crun, deliveries, health, media, v1
from api.routers.batches import JSONL_CONTENT_TYPES
from db.engine import session_scope
from facequeue.logs import configure_logging
from facequeue.settings import Settings, get_settings
from workers.reaper import reap

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    app = FastAPI(title="facequeue", version="0.1.0", lifespan=_lifespan(settings))
    app.state.settings = settings
    if settings.auth == "off":
        log.warning("AUTH IS OFF: every request is served without an API key; never expose this server")
    app.include_router(health.router)
    app.include_router(v1.router)
    app.include_router(batches.router)
    app.include_router(deliveries.router)
    app.include_router(media.router)
    app.include_router(akool.detect_faces_router)
    app.include_router(akool.analyze_frames_router)
    app.include_router(crun.router)
    app.include_router(acedata.router)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodySizeLimit, max_bytes=_max_body_bytes(settings))
    return app


def _lifespan(settings: Settings):
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        reaper = None
        if settings.reaper_interval > 0:
            reaper = threading.Thread(target=_reap_forever, args=(settings, stop), name="reaper", daemon=True)
            reaper.start()
        yield
        stop.set()
        if reaper is not None:
            reaper.join(timeout=10)

    return lifespan


def _reap_forever(settings: Settings, stop: threading.Event) -> None:
    while not stop.wait(settings.reaper_interval):
        try:
            with session_scope() as session:
                report = reap(session, settings)
            if any(vars(report).values()):
                log.info("reaper", **vars(report))
        except Exception:  # the loop must outlive a database or broker outage
            log.exception("reaper_failed")


def _error_body(code: str, message: str, field: str | None) -> dict:
    return {"error": {"code": code, "message": message, "field": field}}


async def _service_error(_request: Request, error: ServiceError) -> JSONResponse:
    body = _error_body(error.code, error.message, error.field)
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return await _service_error(request, validation_error(error))


def _max_body_bytes(settings: Settings) -> int:
    # base64 inflates by 4/3; leave room for the JSON around it
    return settings.max_upload_bytes * 4 // 3 + 64 * 1024


class BodySizeLimit:
    """Refuse request bodies over the limit while streaming, so a huge upload never sits in memory."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if headers.get(b"content-type", b"").split(b";")[0].strip() in JSONL_CONTENT_TYPES:
            await self.app(scope, receive, send)  # batch manifests are spooled to disk under their own cap
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._reject(send)

    async def _reject(self, send) -> None:
        response = JSONResponse(
            _error_body("payload_too_large", f"request body is larger than {self.max_bytes} bytes", None),
            status_code=413,
        )
        await response({"type": "http"}, None, send)


class _BodyTooLarge(Exception):
    pass
