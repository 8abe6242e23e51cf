"""FastAPI dependencies: settings, a request-scoped DB session, storage and the core service."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.auth import ANONYMOUS, Caller, authenticate
from api.rendering import LinkFn, link_maker
from api.service import DetectService
from db.engine import get_sessionmaker
from facequeue.settings import Settings
from facequeue.storage import MediaStorage, get_storage

# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in its thread pool,
# a hop per dependency per request.


async def get_settings(request: Request) -> Settings:
    """The app's settings (tests build apps with their own)."""
    return request.app.state.settings


def get_session() -> Iterator[Session]:
    # Sync on purpose: closing returns the connection (a rollback, blocking I/O), which FastAPI then runs
    # in its thread pool; an async version awaiting a thread from inside FastAPI's shielded exit spun.
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


async def storage_dependency(settings: SettingsDep) -> MediaStorage:
    return get_storage(settings)


StorageDep = Annotated[MediaStorage, Depends(storage_dependency)]


async def get_detect_service(session: SessionDep, settings: SettingsDep, storage: StorageDep) -> DetectService:
    return DetectService(session, settings, storage)


async def get_link_maker(storage: StorageDep, settings: SettingsDep, request: Request) -> LinkFn:
    return link_maker(storage, settings, request)


LinkDep = Annotated[LinkFn, Depends(get_link_maker)]


DetectServiceDep = Annotated[DetectService, Depends(get_detect_service)]


async def current_caller(request: Request, session: SessionDep, settings: SettingsDep) -> Caller:
    if settings.auth == "off":
        return ANONYMOUS
    return await run_in_threadpool(authenticate, request, session, settings)  # a key lookup: blocking I/O


CallerDep = Annotated[Caller, Depends(current_caller)]


async def current_tenant(caller: CallerDep) -> str | None:
    return caller.tenant_id


TenantDep = Annotated[str | None, Depends(current_tenant)]
