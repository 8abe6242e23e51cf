"""Webhook deliveries: a task's attempt log, sending its last event again, and the tenant's recent attempts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from api.deps import DeliveryServiceDep, TenantDep
from api.openapi.responses import CALLER_GATES, ENDPOINT_DISABLED, NATIVE_ERRORS, NOTHING_TO_REDELIVER
from api.schemas import DeliveryLog, RecentDeliveryPage, WebhookEventView
from facequeue.core.webhooks import EventType

router = APIRouter(prefix="/v1", tags=["webhooks"], responses=NATIVE_ERRORS.responses(*CALLER_GATES))


@router.get(
    "/detect/{detect_task_id}/deliveries",
    response_model=DeliveryLog,
    operation_id="listTaskDeliveries",
    responses=NATIVE_ERRORS.responses(404),
)
def list_deliveries(detect_task_id: str, service: DeliveryServiceDep, tenant_id: TenantDep) -> DeliveryLog:
    return service.log(detect_task_id, tenant_id)


@router.post(
    "/detect/{detect_task_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookEventView,
    operation_id="redeliverLastEvent",
    responses=NATIVE_ERRORS.responses(404, NOTHING_TO_REDELIVER, ENDPOINT_DISABLED),
)
def redeliver_last_event(detect_task_id: str, service: DeliveryServiceDep, tenant_id: TenantDep) -> WebhookEventView:
    """Send the task's last event again now, under the same webhook-id, with a fresh round of retries."""
    return service.redeliver_last_event(detect_task_id, tenant_id)


@router.get(
    "/deliveries",
    response_model=RecentDeliveryPage,
    operation_id="listRecentDeliveries",
    responses=NATIVE_ERRORS.responses(422),
)
def list_recent_deliveries(
    service: DeliveryServiceDep,
    tenant_id: TenantDep,
    outcome: Annotated[Literal["succeeded", "failed"] | None, Query(alias="status")] = None,
    event_type: EventType | None = None,
    detect_task_id: Annotated[str | None, Query(description="a task's or a batch's id")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RecentDeliveryPage:
    """Delivery attempts across all the tenant's tasks and batches, newest first; `status` succeeded is a
    2xx answer, failed anything else (an error status, a timeout, a refused address)."""
    return service.recent(tenant_id, outcome, event_type, detect_task_id, cursor, limit)
