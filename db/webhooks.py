"""Webhook tables and every read and write of them.

- `webhook_events` is the outbox: one row per event, written in the transaction that made the
  task final, carrying the exact body and the stable webhook-id, and the retry state;
- `webhook_deliveries` is the log: one row per attempt;
- `disabled_webhook_endpoints` holds the (tenant, URL) pairs that answered 410 Gone.

Like detect_tasks, an event's state moves by conditional UPDATEs fenced by its attempt count,
so duplicate or stale messages never send an attempt twice or overwrite a newer outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, Index, Integer, String, Text, and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.models import Base, UTCDateTime, utcnow


class EventState(StrEnum):
    PENDING = "pending"  # an attempt is due, scheduled or running
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retries used up, or a permanent error (e.g. the SSRF guard refused the URL)
    DISABLED = "disabled"  # the endpoint answered 410 Gone (for this or an earlier event)


class WebhookEvent(Base):
    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the webhook-id header
    task_id: Mapped[str] = mapped_column(String(32), index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=EventState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # attempts made before the current round of retries (a redelivery starts a new round)
    round_start: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # message for the next attempt sent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_webhook_events_state_next_attempt", "state", "next_attempt_at"),)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40), index=True)
    task_id: Mapped[str] = mapped_column(String(32), index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[str | None] = mapped_column(Text)  # the first KB
    latency_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DisabledWebhookEndpoint(Base):
    __tablename__ = "disabled_webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int] = mapped_column(Integer)
    disabled_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    # coalesce: endpoints of tasks without a tenant are scoped together (plain UNIQUE lets NULLs repeat)
    __table_args__ = (
        Index("uq_disabled_webhook_endpoints_tenant_url", func.coalesce(tenant_id, ""), url, unique=True),
    )


def _same_tenant(column, tenant_id) -> ColumnElement[bool]:
    return func.coalesce(column, "") == func.coalesce(tenant_id, "")


def endpoint_disabled(session: Session, tenant_id: str | None, url: str) -> bool:
    found = session.scalar(
        select(DisabledWebhookEndpoint.id)
        .where(_same_tenant(DisabledWebhookEndpoint.tenant_id, tenant_id), DisabledWebhookEndpoint.url == url)
        .limit(1)
    )
    return found is not None


def disable_endpoint(session: Session, tenant_id: str | None, url: str, status_code: int) -> None:
    """Record that (tenant, url) is gone; a second worker recording it at the same moment is no error."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
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


def events_due_for_republish(
    session: Session, unpublished_grace: float, republish_after: float, limit: int = 1000
) -> Sequence[WebhookEvent]:
    """Pending events overdue for their attempt whose message was never sent, or sent so long ago it may be lost."""
    now = utcnow()
    return session.scalars(
        select(WebhookEvent)
        .where(
            WebhookEvent.state == EventState.PENDING,
            WebhookEvent.next_attempt_at < now - timedelta(seconds=unpublished_grace),
            or_(
                WebhookEvent.published_at.is_(None),
                WebhookEvent.published_at < now - timedelta(seconds=republish_after),
            ),
        )
        .order_by(WebhookEvent.next_attempt_at)
        .limit(limit)
    ).all()


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
