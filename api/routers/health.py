"""Liveness and readiness probes."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import SettingsDep
from api.openapi.shapes import Readiness
from facequeue.core.settings import Settings
from facequeue.plumbing import worker_liveness
from facequeue.plumbing.broker import redis_client
from facequeue.plumbing.sessions import get_engine

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="checkLiveness")
async def healthz() -> dict[str, str]:
    # async: answered on the event loop itself, never queued behind the thread pool requests share
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    operation_id="checkReadiness",
    responses={503: {"model": Readiness, "description": "A check failed: status unavailable"}},
)
def readyz(settings: SettingsDep) -> JSONResponse:
    """Ready when the database and the broker answer and some worker beat within FACEQUEUE_WORKER_ALIVE_AFTER.

    Cheap (one `SELECT 1`, a Redis PING and EXISTS) and bounded: the engine's connect, pool and statement
    timeouts (FACEQUEUE_DATABASE_CONNECT_TIMEOUT, FACEQUEUE_DATABASE_TIMEOUT) and FACEQUEUE_REDIS_TIMEOUT
    for each Redis connect and reply."""
    checks = {name: _report(check, settings) for name, check in CHECKS.items()}
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )


def _check_database(_settings: Settings) -> str:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))
    return "ok"


def _check_broker(settings: Settings) -> str:
    redis_client(settings).ping()
    return "ok"


def _check_workers(settings: Settings) -> str:
    if worker_liveness.worker_alive(settings):
        return "ok"
    return f"error: no worker heartbeat in the last {settings.worker_alive_after:g} s"


CHECKS: dict[str, Callable[[Settings], str]] = {
    "database": _check_database,
    "broker": _check_broker,
    "workers": _check_workers,
}


def _report(check: Callable[[Settings], str], settings: Settings) -> str:
    try:
        return check(settings)
    except Exception as error:  # report, never raise, from a probe; the type says enough, the text may hold hosts
        return f"error: {type(error).__name__}"
