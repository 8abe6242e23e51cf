"""Webhook deliveries of a task: the attempt log, and sending the last event again."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import DetectServiceDep, SessionDep, TenantDep
from api.errors import ServiceError
from db import webhooks as webhook_db
from workers.webhooks import redeliver

router = APIRouter(prefix="/v1", tags=["webhooks"])


class NothingToRedeliver(ServiceError):
    status_code = 409
    code = "no_webhook_event"


class EndpointDisabled(ServiceError):
    status_code = 409
    code = "webhook_endpoint_disabled"


class WebhookEventView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    webhook_id: str = Field(validation_alias="id")
    type: str
    url: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime


class DeliveryView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    webhook_id: str = Field(validation_alias="event_id")
    attempt: int
    url: str
    status_code: int | None
    error: str | None
    response_body: str | None
    latency_ms: int
    created_at: datetime
    next_attempt_at: datetime | None


class DeliveryLog(BaseModel):
    detect_task_id: str
    events: list[WebhookEventView]
    items: list[DeliveryView]


@router.get("/detect/{detect_task_id}/deliveries", response_model=DeliveryLog)
def list_deliveries(
    detect_task_id: str, service: DetectServiceDep, tenant_id: TenantDep, session: SessionDep
) -> DeliveryLog:
    task = service.get(detect_task_id, tenant_id)  # 404 unless the caller owns the task
    return DeliveryLog(
        detect_task_id=task.id,
        events=[WebhookEventView.model_validate(event) for event in webhook_db.events_for_task(session, task.id)],
        items=[DeliveryView.model_validate(delivery) for delivery in webhook_db.deliveries_for_task(session, task.id)],
    )


@router.post(
    "/detect/{detect_task_id}/redeliver", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookEventView
)
def redeliver_last_event(
    detect_task_id: str, service: DetectServiceDep, tenant_id: TenantDep, session: SessionDep
) -> WebhookEventView:
    """Send the task's last event again now, under the same webhook-id, with a fresh round of retries."""
    task = service.get(detect_task_id, tenant_id)
    events = webhook_db.events_for_task(session, task.id)
    if not events:
        raise NothingToRedeliver(
            "the task has no webhook event: it is not final, or has neither a callback_url nor a tenant webhook_url",
            field="detect_task_id",
        )
    event = events[-1]
    if webhook_db.endpoint_disabled(session, event.tenant_id, event.url):
        raise EndpointDisabled(f"{event.url} answered 410 Gone; no more deliveries are made to it", field="url")
    redeliver(session, event.id)
    session.commit()
    session.refresh(event)
    return WebhookEventView.model_validate(event)
