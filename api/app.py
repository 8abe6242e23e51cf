"""The FastAPI application: routers, error rendering, request limits (api/limits.py) and the reaper loop."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from api import metrics
from api.compat import (
    BACKEND_UNAVAILABLE,
    http_error,
    native_error,
    shaped_response,
    unexpected_error,
    validation_error,
)
from api.console import docs as api_docs
from api.console import router as console
from api.errors import ServiceError
from api.limits import RequestLimits, RouteTable
from api.openapi import document as openapi_document
from api.request_ids import RequestIds
from api.routers import (
    acedata,
    akool,
    batches,
    collections,
    crun,
    deliveries,
    detect,
    events,
    health,
    media,
    previews,
    webhook_endpoint,
)
from facequeue.core.logs import configure_logging
from facequeue.core.settings import Settings, get_settings
from facequeue.lifecycle.reaper import reap
from facequeue.plumbing.sessions import session_scope

log = structlog.get_logger(__name__)
API_ROUTERS = (
    health.router,
    detect.router,
    events.router,
    previews.router,
    batches.router,
    collections.router,
    deliveries.router,
    webhook_endpoint.router,
    media.router,
    akool.detect_faces_router,
    akool.analyze_frames_router,
    crun.router,
    acedata.router,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    # /docs and /redoc are api_docs' pages, with Swagger UI and ReDoc served from here: no CDN, so air-gapped too
    app = FastAPI(
        title="facequeue HTTP API",  # generated clients take its name: facequeue_http_api_client, not facequeue_client
        version="0.1.0",
        lifespan=_lifespan(settings),
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=openapi_document.operation_id,
    )
    app.state.settings = settings
    if settings.auth == "off":
        log.warning("AUTH IS OFF: every request is served without an API key; never expose this server")
    for router in API_ROUTERS:
        app.include_router(router)
    app.include_router(api_docs.router)
    app.mount(api_docs.ASSETS_URL, api_docs.static_files(), name="docs-static")
    app.include_router(console.router)
    openapi_document.install(app)  # security, error shapes and examples: /openapi.json as a contract
    app.mount(console.STATIC_URL, console.static_files(), name="console-static")
    # compat routes shape their own errors (api/compat.py); these handlers see the native routes' and routing's
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for unavailable in BACKEND_UNAVAILABLE:  # the database or Redis did not answer: 503, not Starlette's plain 500
        app.add_exception_handler(unavailable, _backend_unavailable)
    app.state.routes = RouteTable(API_ROUTERS, jsonl_endpoints={batches.create_batch})
    app.add_middleware(RequestLimits, routes=app.state.routes, settings=settings)
    app.add_middleware(RequestIds, routers=API_ROUTERS)  # added last: outside RequestLimits, so refusals are logged
    metrics.instrument(app, settings)  # after the other middleware: outermost, so their refusals count too
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
    """A pass as the process starts, then one every FACEQUEUE_REAPER_INTERVAL: a deployment's first pass marks
    its broker intact before traffic can build up (until then every queued task counts as lost with it)."""
    while True:
        try:
            with session_scope() as session:
                report = reap(session, settings)
            if report is not None and any(vars(report).values()):
                log.info("reaper", **vars(report))
        except BACKEND_UNAVAILABLE as error:  # the loop outlives a database or broker outage, in one line a pass
            log.warning("reaper_waits_for_backend", unavailable=type(error).__name__)
        except Exception:
            log.exception("reaper_failed")
        if stop.wait(settings.reaper_interval):
            return


async def _service_error(_request: Request, error: ServiceError) -> JSONResponse:
    return shaped_response(native_error, error)


async def _backend_unavailable(request: Request, error: Exception) -> JSONResponse:
    return shaped_response(native_error, unexpected_error(error, "request_failed", request.url.path))


async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    return native_error(validation_error(error))


async def _http_error(request: Request, error: HTTPException) -> Response:
    """Routing's 404 and 405, and body errors on native routes, in the shape of the API the path belongs to."""
    render = request.app.state.routes.policy_for(request.scope).render
    return shaped_response(render, http_error(error, request.scope))
