"""Webhook events (the outbox), their delivery log and disabled endpoints: every read and write of them.

Like detect_tasks, an event's state moves by conditional UPDATEs fenced by its attempt count,
so duplicate or stale messages never send an attempt twice or overwrite a newer outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import DisabledWebhookEndpoint, WebhookDelivery, WebhookEvent, utcnow
from facequeue.core.enums import EventState


def _same_tenant(column, tenant_id) -> ColumnElement[bool]:
    return func.coalesce(column, "") == func.coalesce(tenant_id, "")


def endpoint_disabled(session: Session, tenant_id: str | None, url: str) -> bool:
    found = session.scalar(
        select(DisabledWebhookEndpoint.id)
        .where(_same_tenant(DisabledWebhookEndpoint.tenant_id, tenant_id), DisabledWebhookEndpoint.url == url)
        .limit(1)
    )
    return found is not None


def endpoint_disabled_at(session: Session, tenant_id: str | None, url: str) -> datetime | None:
    return session.scalar(
        select(DisabledWebhookEndpoint.disabled_at).where(
            _same_tenant(DisabledWebhookEndpoint.tenant_id, tenant_id), DisabledWebhookEndpoint.url == url
        )
    )


def enable_endpoint(session: Session, tenant_id: str | None, url: str) -> None:
    """Deliver to (tenant, url) again, although it once answered 410 Gone."""
    session.execute(
        delete(DisabledWebhookEndpoint).where(
            _same_tenant(DisabledWebhookEndpoint.tenant_id, tenant_id), DisabledWebhookEndpoint.url == url
        )
    )


def disable_endpoint(session: Session, tenant_id: str | None, url: str, status_code: int) -> None:
    """Record that (tenant, url) is gone; a second worker recording it at the same moment is no error."""
    session.execute(
        insert(DisabledWebhookEndpoint)
        .values(tenant_id=tenant_id, url=url, status_code=status_code, disabled_at=utcnow())
        .on_conflict_do_nothing()
    )


def _fence(event_id: str, attempts: int) -> ColumnElement[bool]:
    """The event is still pending and nobody made an attempt since `attempts` was read."""
    return and_(
        WebhookEvent.id == event_id, WebhookEvent.state == EventState.PENDING, WebhookEvent.attempts == attempts
    )


def _event_endpoint_disabled() -> ColumnElement[bool]:
    return exists().where(
        _same_tenant(DisabledWebhookEndpoint.tenant_id, WebhookEvent.tenant_id),
        DisabledWebhookEndpoint.url == WebhookEvent.url,
    )


def claim_attempt(session: Session, event_id: str, attempts: int, lease_seconds: float) -> WebhookEvent | None:
    """Start attempt `attempts + 1` for exactly one run, and commit.

    None when the message is stale (another run took this attempt, or the event is settled); an event
    whose endpoint was disabled meanwhile is settled as disabled instead of attempted. The lease makes
    an attempt whose worker died due again, for `events_due_for_republish`.
    """
    fence = _fence(event_id, attempts)
    session.execute(
        update(WebhookEvent)
        .where(fence, _event_endpoint_disabled())
        .values(state=EventState.DISABLED, next_attempt_at=None)
    )
    claimed = session.execute(
        update(WebhookEvent)
        .where(fence)
        .values(
            attempts=WebhookEvent.attempts + 1,
            next_attempt_at=utcnow() + timedelta(seconds=lease_seconds),
            published_at=None,
        )
        .returning(WebhookEvent.id)
    ).first()
    session.commit()
    if claimed is None:
        return None
    return session.get(WebhookEvent, event_id, populate_existing=True)


def record_attempt(session: Session, delivery: WebhookDelivery, state: EventState) -> bool:
    """Log the attempt and move its event on; False when a redelivery took the event over meanwhile."""
    session.add(delivery)
    result = session.execute(
        update(WebhookEvent)
        .where(_fence(delivery.event_id, delivery.attempt))
        .values(state=state, next_attempt_at=delivery.next_attempt_at)
    )
    return result.rowcount == 1


def mark_published(session: Session, event_id: str, attempts: int) -> None:
    session.execute(update(WebhookEvent).where(_fence(event_id, attempts)).values(published_at=utcnow()))


def events_due_for_republish(session: Session, unpublished_grace: float, limit: int = 1000) -> Sequence[WebhookEvent]:
    """Pending events overdue for their attempt by `unpublished_grace` seconds whose message was never sent.

    `published_at` is set only once the broker took the message, and cleared when a run claims the attempt, so
    an event waiting in a backlog is never returned; a claimed attempt whose worker died is, once its lease
    (`claim_attempt`) runs out."""
    return session.scalars(
        select(WebhookEvent)
        .where(
            WebhookEvent.state == EventState.PENDING,
            WebhookEvent.next_attempt_at < utcnow() - timedelta(seconds=unpublished_grace),
            WebhookEvent.published_at.is_(None),
        )
        .order_by(WebhookEvent.next_attempt_at)
        .limit(limit)
    ).all()


def forget_publishes_before(session: Session, moment: datetime) -> None:
    """The broker lost every message sent before `moment`: their pending events count as never published."""
    session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.state == EventState.PENDING, WebhookEvent.published_at < moment)
        .values(published_at=None)
    )


def rearm_event(session: Session, event_id: str) -> int:
    """Make the event due now with a fresh round of retries; returns its attempt count (the message's fence)."""
    return session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id)
        .values(
            state=EventState.PENDING,
            round_start=WebhookEvent.attempts,
            next_attempt_at=utcnow(),
            published_at=None,
        )
        .returning(WebhookEvent.attempts)
    ).scalar_one()


def events_for_task(session: Session, task_id: str) -> Sequence[WebhookEvent]:
    return session.scalars(
        select(WebhookEvent).where(WebhookEvent.task_id == task_id).order_by(WebhookEvent.created_at)
    ).all()


def deliveries_for_task(session: Session, task_id: str) -> Sequence[WebhookDelivery]:
    return session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.task_id == task_id).order_by(WebhookDelivery.id)
    ).all()


class RecentDelivery(NamedTuple):
    attempt: WebhookDelivery
    event_type: str
    event_state: str


def recent_deliveries(
    session: Session,
    tenant_id: str | None,
    succeeded: bool | None,
    event_type: str | None,
    subject_id: str | None,
    below_id: int | None,
    limit: int,
) -> tuple[list[RecentDelivery], int | None]:
    """A tenant's attempts, newest first, each with its event's type and state; `subject_id` is the task
    or batch the event is about. A page starts below the last row's id (ids grow with every attempt), and
    the id for the next page is returned when there is one."""
    query = (
        select(WebhookDelivery, WebhookEvent.type, WebhookEvent.state)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(_same_tenant(WebhookDelivery.tenant_id, tenant_id))
    )
    if succeeded is not None:
        two_xx = WebhookDelivery.status_code.between(200, 299)
        query = query.where(two_xx if succeeded else or_(WebhookDelivery.status_code.is_(None), ~two_xx))
    if event_type is not None:
        query = query.where(WebhookEvent.type == event_type)
    if subject_id is not None:
        query = query.where(WebhookDelivery.task_id == subject_id)
    if below_id is not None:
        query = query.where(WebhookDelivery.id < below_id)
    rows = [RecentDelivery(*row) for row in session.execute(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1))]
    return rows[:limit], rows[limit - 1].attempt.id if len(rows) > limit else None
