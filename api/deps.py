"""FastAPI dependencies, chained as typed aliases so a route's signature says what it needs:
settings -> session -> storage -> services, and caller -> tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.auth import CALLER_SCOPE_KEY, Caller
from api.openapi.security import BearerKey, HeaderKey
from api.rendering import LinkFn, link_maker
from api.services.batches import BatchService
from api.services.collections import CollectionService
from api.services.deliveries import DeliveryService
from api.services.detect import DetectService
from api.services.event_hub import TaskEventHub, task_event_hub
from api.services.previews import PreviewService
from api.services.sync_slots import sync_call_slot
from api.services.webhook_endpoints import WebhookEndpointService
from facequeue.core.settings import Settings
from facequeue.core.storage import MediaStorage, get_storage
from facequeue.plumbing.sessions import get_sessionmaker

# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in its thread pool,
# a hop per dependency per request.


async def app_settings(request: Request) -> Settings:
    """The settings the app was built with (tests build apps with their own)."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(app_settings)]

_session_closer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="session-close")


async def request_session() -> AsyncIterator[Session]:
    # No I/O here (a connection is taken on first use, in the endpoint's thread), so no thread-pool hop: a
    # sync dependency costs two (enter and exit), more than the rest of a submit's framework work.
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        if session.in_transaction():
            # its rollback is blocking I/O: handed to a thread, not awaited (awaiting a thread inside FastAPI's
            # shielded exit spun)
            _session_closer.submit(session.close)
        else:
            session.close()  # committed or unused: hands back no connection, or one with nothing to roll back


SessionDep = Annotated[Session, Depends(request_session)]


async def media_storage(settings: SettingsDep) -> MediaStorage:
    return get_storage(settings)


StorageDep = Annotated[MediaStorage, Depends(media_storage)]


async def result_links(storage: StorageDep, settings: SettingsDep, request: Request) -> LinkFn:
    return link_maker(storage, settings, request)


LinkDep = Annotated[LinkFn, Depends(result_links)]


async def current_caller(request: Request, _bearer: BearerKey, _api_key: HeaderKey) -> Caller:
    """Authenticated by api/limits.py before the body was read; a route depending on this is one it checks.
    The two key headers are parameters only so the OpenAPI document declares them (api/openapi/security.py)."""
    return request.scope[CALLER_SCOPE_KEY]


CallerDep = Annotated[Caller, Depends(current_caller)]


async def current_tenant(caller: CallerDep) -> str | None:
    return caller.tenant_id


TenantDep = Annotated[str | None, Depends(current_tenant)]


async def sync_call(caller: CallerDep, settings: SettingsDep) -> AsyncIterator[None]:
    """One of the caller's FACEQUEUE_MAX_SYNC_CALLS_PER_KEY synchronous calls, held until the call ends."""
    async with sync_call_slot(caller.key_id, settings):
        yield


# route dependency of the synchronous compat calls
SyncCallSlot = Depends(sync_call)


async def detect_service(session: SessionDep, settings: SettingsDep, storage: StorageDep) -> DetectService:
    return DetectService(session, settings, storage)


DetectServiceDep = Annotated[DetectService, Depends(detect_service)]


async def batch_service(session: SessionDep, settings: SettingsDep, storage: StorageDep) -> BatchService:
    return BatchService(session, settings, storage)


BatchServiceDep = Annotated[BatchService, Depends(batch_service)]


async def collection_service(session: SessionDep, settings: SettingsDep, storage: StorageDep) -> CollectionService:
    return CollectionService(session, settings, storage)


CollectionServiceDep = Annotated[CollectionService, Depends(collection_service)]


async def delivery_service(session: SessionDep, settings: SettingsDep) -> DeliveryService:
    return DeliveryService(session, settings)


DeliveryServiceDep = Annotated[DeliveryService, Depends(delivery_service)]


async def webhook_endpoint_service(session: SessionDep, settings: SettingsDep) -> WebhookEndpointService:
    return WebhookEndpointService(session, settings)


WebhookEndpointServiceDep = Annotated[WebhookEndpointService, Depends(webhook_endpoint_service)]


async def event_hub(settings: SettingsDep) -> TaskEventHub:
    return task_event_hub(settings)


EventHubDep = Annotated[TaskEventHub, Depends(event_hub)]


async def preview_service(session: SessionDep, settings: SettingsDep, storage: StorageDep) -> PreviewService:
    return PreviewService(session, settings, storage)


PreviewServiceDep = Annotated[PreviewService, Depends(preview_service)]
