"""Webhook deliveries: a task's attempt log, sending its last event again, and a tenant's recent attempts."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.errors import ServiceError
from api.schemas import DeliveryLog, DeliveryView, RecentDeliveryPage, RecentDeliveryView, WebhookEventView
from api.services import cursors
from api.services.detect import owned_task
from db import deliveries
from facequeue.core.settings import Settings
from facequeue.core.webhooks import EventType
from facequeue.lifecycle.outbox import redeliver


class NothingToRedeliver(ServiceError):
    status_code = 409
    code = "no_webhook_event"


class EndpointDisabled(ServiceError):
    status_code = 409
    code = "webhook_endpoint_disabled"


class DeliveryService:
    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    def log(self, task_id: str, tenant_id: str | None) -> DeliveryLog:
        task = owned_task(self.session, task_id, tenant_id)
        events = deliveries.events_for_task(self.session, task.id)
        attempts = deliveries.deliveries_for_task(self.session, task.id)
        return DeliveryLog(
            detect_task_id=task.id,
            events=[WebhookEventView.model_validate(event) for event in events],
            items=[DeliveryView.model_validate(attempt) for attempt in attempts],
        )

    def redeliver_last_event(self, task_id: str, tenant_id: str | None) -> WebhookEventView:
        """Send the task's last event again now, under the same webhook-id, with a fresh round of retries."""
        task = owned_task(self.session, task_id, tenant_id)
        events = deliveries.events_for_task(self.session, task.id)
        if not events:
            raise NothingToRedeliver(
                "the task has no webhook event: it is not final, or has neither a callback_url nor a tenant "
                "webhook_url",
                field="detect_task_id",
            )
        event = events[-1]
        if deliveries.endpoint_disabled(self.session, event.tenant_id, event.url):
            raise EndpointDisabled(f"{event.url} answered 410 Gone; no more deliveries are made to it", field="url")
        redeliver(self.session, event.id)
        self.session.commit()
        self.session.refresh(event)
        return WebhookEventView.model_validate(event)

    def recent(
        self,
        tenant_id: str | None,
        outcome: str | None,
        event_type: str | None,
        detect_task_id: str | None,
        cursor: str | None,
        limit: int,
    ) -> RecentDeliveryPage:
        """The tenant's attempts across all its tasks and batches, newest first; `outcome` is succeeded (a 2xx)
        or failed. Filtering on another tenant's task finds nothing."""
        succeeded = None if outcome is None else outcome == "succeeded"
        below_id = None if cursor is None else cursors.unseal(cursor, "deliveries", tenant_id, self.settings)
        rows, next_id = deliveries.recent_deliveries(
            self.session,
            tenant_id,
            succeeded,
            event_type,
            detect_task_id,
            None if below_id is None else int(below_id),
            limit,
        )
        next_cursor = None if next_id is None else cursors.seal(str(next_id), "deliveries", tenant_id, self.settings)
        return RecentDeliveryPage(items=[_recent_view(row) for row in rows], next_cursor=next_cursor)


def _recent_view(row: deliveries.RecentDelivery) -> RecentDeliveryView:
    about_batch = row.event_type == EventType.BATCH_COMPLETED
    return RecentDeliveryView(
        **DeliveryView.model_validate(row.attempt).model_dump(),
        event_type=row.event_type,
        event_state=row.event_state,
        detect_task_id=None if about_batch else row.attempt.task_id,
        batch_id=row.attempt.task_id if about_batch else None,
    )
